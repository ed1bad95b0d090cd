#!/usr/bin/env bash
# Runs every fuzz target at once, each until its process has used SECONDS
# CPU-seconds (default 600: the 10 CPU-minutes of docs/fuzzing.md), then
# stops it with SIGINT so libFuzzer prints its final statistics. Logs and
# a summary line per target go to LOGDIR (default fuzz/logs).
#
#   fuzz/run-cpu-budget.sh [SECONDS] [LOGDIR]
set -euo pipefail
cd "$(dirname "$0")"
BUDGET=${1:-600}
LOGS=${2:-logs}
mkdir -p "$LOGS"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -a -s none
BIN=target/x86_64-unknown-linux-gnu/release
TCK=$(getconf CLK_TCK)
run_one() {
	local t=$1 start cpu=0 ticks pid rc
	mkdir -p "artifacts/$t"
	start=$(date +%s)
	"$BIN/$t" -artifact_prefix="artifacts/$t/" -print_final_stats=1 "corpus/$t" > "$LOGS/$t.log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		ticks=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null) || break
		[ -n "$ticks" ] && cpu=$((ticks / TCK))
		if [ "$cpu" -ge "$BUDGET" ]; then kill -INT "$pid"; fi
	done
	rc=0; wait "$pid" || rc=$?
	echo "$t exit=$rc wall=$(( $(date +%s) - start ))s cpu=${cpu}s" | tee -a "$LOGS/summary.txt"
}
for t in wav ogg_opus csr mdns_txt json_bodies; do run_one "$t" & done
wait
