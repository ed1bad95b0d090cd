#!/usr/bin/env bash
# Quick side-by-side figures for issue 14 (BENCHMARKS.md (f)), from built
# binaries, without compiling anything:
#
#   benches/quick.sh NEW_HEARTH REFERENCE_HEARTH [HEARTH_TOY]
#
# For each hub binary, alternately, in the same run: its size (and xz -6
# size, what a .deb carries), hub CPU per sign-in (Argon2id, 8 sign-ins
# after setup), VmRSS after setup and one sign-in and after those sign-ins, and hub CPU per stored toy
# recording (one toy paired through the reference client `hearth-toy`, then
# 30 uploads of a 10 s wideband Ogg Opus clip made by ffmpeg's libopus, each
# a new `hearth-toy record` process, so a TLS handshake is included). The
# hub runs with the systemd unit's Environment= lines.
# Needs curl, python3, ffmpeg (with libopus).
set -euo pipefail
NEW=$1; REF=$2; TOY=${3:-$(dirname "$NEW")/hearth-toy}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "aevalsrc='0.3*sin(2*PI*(140+40*sin(1.3*t))*t)*abs(sin(PI*4*t))+0.15*sin(2*PI*(420+80*sin(3.1*t))*t)*abs(sin(PI*4*t))+0.01*(random(0)-0.5)':s=16000:d=10" -ac 1 "$W/speech.wav"
ffmpeg -hide_banner -loglevel error -y -i "$W/speech.wav" -c:a libopus -b:a 24k -ar 16000 "$W/rec.opus"
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }

measure() {
	local bin=$1 port=$2 d
	d=$(mktemp -d -p "$W")
	echo 'version = 1' > "$d/h.toml"
	env $(sed -n "s/^Environment=//p" "$(dirname "$0")/../systemd/hearth.service") "$bin" serve --data-dir "$d/data" --listen "127.0.0.1:$port" --no-mdns --config "$d/h.toml" > "$d/log" 2>&1 &
	local pid=$! u="https://127.0.0.1:$port"
	for _ in $(seq 200); do [ -f "$d/data/setup-code" ] && curl -sk "$u/login" -o /dev/null && break; sleep 0.1; done
	local h=(-H 'Content-Type: application/json' -H "Origin: $u")
	curl -sk -X POST "$u/api/v1/setup" "${h[@]}" -o /dev/null \
		-d "{\"setup_code\":\"$(cat "$d/data/setup-code")\",\"household\":\"Benchhill\",\"username\":\"mum\",\"password\":\"plum violet kettle harbour\"}"
	local t0 token rss1
	curl -sk -X POST "$u/api/v1/login" "${h[@]}" -d '{"username":"mum","password":"plum violet kettle harbour"}' -o /dev/null
	sleep 2
	rss1=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
	t0=$(cpu "$pid")
	for _ in $(seq 8); do
		token=$(curl -sk -X POST "$u/api/v1/login" "${h[@]}" -d '{"username":"mum","password":"plum violet kettle harbour"}' |
			python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
	done
	local login_ms=$(( ($(cpu "$pid") - t0) * 1000 / TCK / 8 ))
	sleep 2
	local rss; rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
	local a=(-H "Authorization: Bearer $token")
	"$TOY" --state "$d/toy" --hub "127.0.0.1:$port" --hub-name localhost --no-mdns --name Bear --say-cmd "echo PAIRCODE={code}" > "$d/toy.log" 2>&1 &
	local tpid=$!
	for _ in $(seq 300); do grep -qs PAIRCODE= "$d/toy.log" && break; sleep 0.1; done
	local code pairing
	code=$(grep -o 'PAIRCODE=[0-9]*' "$d/toy.log" | head -1 | cut -d= -f2)
	pairing=$(curl -sk "$u/api/v1/toys" "${a[@]}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["pending"][0]["pairing_id"])')
	curl -sk -X POST "$u/api/v1/pairings/$pairing/confirm" "${a[@]}" "${h[@]}" -d "{\"code\":\"$code\"}" -o /dev/null
	sleep 2; kill "$tpid"; wait "$tpid" 2>/dev/null || true
	local n=30 ok=0
	t0=$(cpu "$pid")
	for _ in $(seq $n); do "$TOY" --state "$d/toy" --hub "127.0.0.1:$port" --hub-name localhost --no-mdns record "$W/rec.opus" > /dev/null 2>&1 && ok=$((ok + 1)); done
	local rec_ms; rec_ms=$(awk -v t="$(( $(cpu "$pid") - t0 ))" -v k="$TCK" -v n=$n 'BEGIN {printf "%.1f", t * 1000 / k / n}')
	kill "$pid"; wait "$pid" 2>/dev/null || true
	printf '| %s | %.1f MiB | %.1f MiB | %s MiB | %s ms | %s MiB | %s ms (%s/%s stored) |\n' "$bin" \
		"$(awk -v b="$(stat -c %s "$bin")" 'BEGIN {print b/1048576}')" \
		"$(awk -v b="$(xz -6 -T1 -c "$bin" | wc -c)" 'BEGIN {print b/1048576}')" \
		"$rss1" "$login_ms" "$rss" "$rec_ms" "$ok" "$n"
}
echo "machine: nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| binary | size | xz -6 | VmRSS after setup and one sign-in | hub CPU per sign-in | VmRSS after 9 sign-ins | hub CPU per stored 10 s recording |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for round in 1 2; do
	measure "$NEW" $((18500 + round))
	measure "$REF" $((18600 + round))
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
