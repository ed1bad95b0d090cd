#!/usr/bin/env bash
# Writes packaging/hearth.order, the order in which the release hub's
# functions are laid out (build.rs, BENCHMARKS.md (o)):
#
#   benches/code-order.sh
#
# Builds the release hub with its link map, then runs it under valgrind's
# callgrind three times on one data directory: (1) a restart of a set-up
# household with a toy, through what a hub does all day (sign-in, pairing a
# second toy, the pages, the event stream, a parent's message, two of the
# toy's recordings, a download, the ledger, the toy's long-polls, mDNS,
# idling); (2) a first start on an empty data directory; (3) the setup
# itself. The functions they ran, named from the link map, are written out,
# those every run needs first (benches/code-order.py). Rerun it after a Rust
# or dependency upgrade (the symbols' names change with them); the build
# skips names it does not have. Under valgrind the password rule's
# short-lived checker (`/proc/self/exe check-password`) cannot start, since
# /proc/self/exe is valgrind, so the setup run checks the rule in the hub
# itself (it says so in its log): that code comes last in the order, where
# it costs nothing. Needs valgrind, curl, python3, ffmpeg. Takes about 10
# minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
# The path packaging/build-debs.sh uses too, so that neither relinks the
# other's build.
MAP=${CARGO_TARGET_DIR:-$PWD/target}/hearth.map
BUILD_HEARTH_LINK_MAP=$MAP cargo build --release --bin hearth --bin hearth-toy
cp "${CARGO_TARGET_DIR:-target}/release/hearth" "$W/hearth"; BIN="$W/hearth"; TOY=${CARGO_TARGET_DIR:-target}/release/hearth-toy
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "aevalsrc='0.3*sin(2*PI*(140+40*sin(1.3*t))*t)*abs(sin(PI*4*t))+0.01*(random(0)-0.5)':s=16000:d=10" -ac 1 "$W/speech.wav"
ffmpeg -hide_banner -loglevel error -y -i "$W/speech.wav" -c:a libopus -b:a 24k -ar 16000 "$W/rec.opus"
port=18777; u="https://127.0.0.1:$port"; d="$W/h"; mkdir -p "$d"; echo 'version = 1' > "$d/h.toml"
h=(-H 'Content-Type: application/json' -H "Origin: $u")
PW='plum violet kettle harbour'
ENVS=$(sed -n 's/^Environment=//p' systemd/hearth.service)

hub() { # hub PROFILE_NAME|- [serve options]: starts the hub (under callgrind unless -)
	local name=$1; shift
	local pre=()
	[ "$name" = - ] || pre=(valgrind --tool=callgrind --dump-instr=yes "--callgrind-out-file=$W/$name.cg")
	env $ENVS "${pre[@]}" "$BIN" serve --data-dir "$d/data" --listen "127.0.0.1:$port" --config "$d/h.toml" "$@" > "$W/$name.log" 2>&1 &
	echo $! > "$W/pid"
	for _ in $(seq 1200); do curl -sk -m 30 "$u/login" -o /dev/null && return; sleep 0.2; done
	echo "the hub did not start: $(tail -3 "$W/$name.log")" >&2; exit 1
}
stop() { local pid; pid=$(cat "$W/pid"); kill -TERM "$pid"; wait "$pid" || true; }
login() { curl -sk -m 120 -X POST "$u/api/v1/login" "${h[@]}" -d "{\"username\":\"mum\",\"password\":\"$PW\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])'; }
json() { python3 -c "import json,sys;print(json.load(sys.stdin)$1)"; }

pair() { # pair NAME: pairs a new toy whose state is $d/NAME; leaves it running as $tpid
	"$TOY" --state "$d/$1" --hub "127.0.0.1:$port" --hub-name localhost --no-mdns --name "$1" --play-cmd true --say-cmd "echo PAIRCODE={code}" > "$W/$1.log" 2>&1 &
	tpid=$!
	for _ in $(seq 1200); do grep -qs PAIRCODE= "$W/$1.log" && break; sleep 0.2; done
	local pairing
	pairing=$(curl -sk -m 60 "$u/api/v1/toys" "${a[@]}" | json '["pending"][0]["pairing_id"]')
	curl -sk -m 120 -X POST "$u/api/v1/pairings/$pairing/confirm" "${a[@]}" "${h[@]}" -o /dev/null -d "{\"code\":\"$(grep -o 'PAIRCODE=[0-9]*' "$W/$1.log" | head -1 | cut -d= -f2)\"}"
	for _ in $(seq 1200); do grep -qs cert_pem "$d/$1/toy.json" && break; sleep 0.2; done
}

# A household with a paired toy, made natively (not profiled).
hub - --no-mdns
curl -sk -X POST "$u/api/v1/setup" "${h[@]}" -o /dev/null -d "{\"setup_code\":\"$(cat "$d/data/setup-code")\",\"household\":\"Orderhill\",\"username\":\"mum\",\"password\":\"$PW\"}"
a=(-H "Authorization: Bearer $(login)")
pair toy
toy=$(curl -sk "$u/api/v1/toys" "${a[@]}" | json '["paired"][0]["toy_id"]')
kill "$tpid"; wait "$tpid" 2>/dev/null || true
stop

# (1) A day's work after a restart.
hub day
a=(-H "Authorization: Bearer $(login)")
pair toy2 # a second toy, paired during the day
kill "$tpid"; wait "$tpid" 2>/dev/null || true
"$TOY" --state "$d/toy" --hub "127.0.0.1:$port" --hub-name localhost --no-mdns --play-cmd true > "$W/toy.log" 2>&1 &
tpid=$!
for p in / /login /toys "/toys/$toy" /static/app.css /static/app.js /ledger /members /data /account /sharing; do curl -sk -m 60 "${a[@]}" "$u$p" -o /dev/null; done
(curl -sk -m 30 -N "${a[@]}" "$u/api/v1/events" > "$W/events" 2>/dev/null || true) &
sleep 3
curl -sk -m 120 -X POST "${a[@]}" -H "Origin: $u" -H 'Content-Type: audio/wav' --data-binary "@$W/speech.wav" "$u/api/v1/toys/$toy/messages" -o /dev/null
for _ in 1 2; do "$TOY" --state "$d/toy" --hub "127.0.0.1:$port" --hub-name localhost --no-mdns record "$W/rec.opus" >> "$W/record.log" 2>&1 || echo "a recording failed: $(tail -2 "$W/record.log")" >&2; done
id=$(curl -sk -m 60 "${a[@]}" "$u/api/v1/messages?toy=$toy" | json '["messages"][0]["id"]')
curl -sk -m 60 "${a[@]}" "$u/api/v1/messages/$id/audio" -o /dev/null
curl -sk -m 60 "${a[@]}" "$u/api/v1/toys" -o /dev/null
curl -sk -m 60 "${a[@]}" "$u/api/v1/ledger" -o /dev/null
sleep 30
kill "$tpid"; wait "$tpid" 2>/dev/null || true
stop
grep -q "event: message" "$W/events" || { echo "the day's run saw no message event" >&2; exit 1; }

# (2) A first start, (3) the setup.
rm -rf "$d/data"
hub first --no-mdns
stop
hub setup --no-mdns
curl -sk -m 300 "$u/setup" -o /dev/null
curl -sk -m 300 -X POST "$u/api/v1/setup" "${h[@]}" -o /dev/null -d "{\"setup_code\":\"$(cat "$d/data/setup-code")\",\"household\":\"Orderhill\",\"username\":\"mum\",\"password\":\"$PW\"}"
login > /dev/null
stop
python3 benches/code-order.py "$MAP" "$BIN" "$W/day.cg" "$W/first.cg" "$W/setup.cg" > packaging/hearth.order
echo "wrote packaging/hearth.order: rebuild the release hub to use it"
