#!/usr/bin/env bash
# The idle figure of issue 14 (BENCHMARKS.md (k)): each hub's memory after
# setup, one sign-in and SECS seconds (default 600) of idling, both hubs at
# once so the same minutes of the machine's life count for each:
#
#   benches/idle.sh NEW_HEARTH REFERENCE_HEARTH [SECS]
#
# Prints VmRSS and its parts (RssAnon: the hub's own memory; RssFile: pages
# of the binary and libraries, which the kernel can drop and read again)
# and Pss from /proc/PID/smaps_rollup, right after the sign-in and at the
# end. The hubs run with the systemd unit's Environment= lines. Needs curl.
set -euo pipefail
NEW=$1; REF=$2; SECS=${3:-600}
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
UNIT=$(dirname "$0")/../systemd/hearth.service
ENVS=$(sed -n 's/^Environment=//p' "$UNIT")

start() {
	local bin=$1 port=$2 d="$W/$2"
	mkdir -p "$d"; echo 'version = 1' > "$d/h.toml"
	env $ENVS "$bin" serve --data-dir "$d/data" --listen "127.0.0.1:$port" --no-mdns --config "$d/h.toml" > "$d/log" 2>&1 &
	echo $! > "$d/pid"
	local u="https://127.0.0.1:$port" h=(-H 'Content-Type: application/json' -H "Origin: https://127.0.0.1:$port")
	for _ in $(seq 300); do [ -f "$d/data/setup-code" ] && curl -sk "$u/login" -o /dev/null && break; sleep 0.1; done
	curl -sk -X POST "$u/api/v1/setup" "${h[@]}" -o /dev/null \
		-d "{\"setup_code\":\"$(cat "$d/data/setup-code")\",\"household\":\"Idlehill\",\"username\":\"mum\",\"password\":\"plum violet kettle harbour\"}"
	curl -sk -X POST "$u/api/v1/login" "${h[@]}" -o /dev/null -d '{"username":"mum","password":"plum violet kettle harbour"}'
}
row() {
	local bin=$1 pid=$2 when=$3
	printf '| %s | %s | %s | %s | %s | %s |\n' "$bin" "$when" \
		"$(awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")" \
		"$(awk '/^RssAnon/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")" \
		"$(awk '/^RssFile/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")" \
		"$(awk '/^Pss:/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/smaps_rollup")"
}
start "$NEW" 18711; start "$REF" 18712
sleep 2
echo "machine: nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg); unit environment: $ENVS"
echo "| binary | when | VmRSS | RssAnon | RssFile | Pss |"
echo "| --- | --- | --- | --- | --- | --- |"
row "$NEW" "$(cat "$W/18711/pid")" "after setup and one sign-in"
row "$REF" "$(cat "$W/18712/pid")" "after setup and one sign-in"
sleep "$SECS"
row "$NEW" "$(cat "$W/18711/pid")" "then $SECS s idle"
row "$REF" "$(cat "$W/18712/pid")" "then $SECS s idle"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
