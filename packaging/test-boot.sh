#!/usr/bin/env bash
# Boot test for the hearth Debian package: the real unit under a real systemd.
#
#   packaging/test-boot.sh path/to/hearth_VERSION_amd64.deb [path/to/hearth-toy_VERSION_amd64.deb]
#
# Runs as root. Unpacks the bookworm root cached by test-install.sh (making
# it first if needed, which takes the toy's package too: test-install.sh
# tests both) into a folder of its own, boots it with
# `systemd-nspawn --boot --private-network` (only loopback inside, so mDNS
# stays on this machine), installs the package with dpkg as a person would,
# and checks that postinst started the hardened service: Type=notify
# readiness, the watchdog, the setup code (file 0600 and journal line, no
# duplicated timestamps), private data files, HTTPS on 443 and the redirect
# on 80, `hearth doctor`; then an upgrade restarts it with the data kept,
# remove stops it, purge deletes the data. The container is always stopped
# and its folder deleted on exit (HEARTH_TEST_KEEP=1 keeps the folder).
#
# Exits non-zero on any failure and ends with "N passed, N failed".
set -euo pipefail

DEB=${1:?usage: packaging/test-boot.sh path/to/hearth_VERSION_amd64.deb [path/to/hearth-toy_VERSION_amd64.deb]}
TOY_DEB=${2:-}
[ -f "$DEB" ] || { echo "test-boot: error: no such file: $DEB" >&2; exit 2; }
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
[ "$(id -u)" -eq 0 ] || { echo "test-boot: error: must run as root" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${HEARTH_TEST_CACHE:-/var/cache/hearth-test/bookworm-minbase.tar.gz}
DATA=/var/lib/hearth
CONF=/etc/hearth/hearth.toml

PASSED=0
FAILED=0
ROOT=""
OUT=""
NSPAWN=""
LEADER=""

log() { echo "test-boot: $*" >&2; }
die() { echo "test-boot: error: $*" >&2; exit 1; }
pass() { PASSED=$((PASSED + 1)); echo "  ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL  $*"; }
check() {
	local what=$1 out
	shift
	out=$(mktemp)
	if "$@" >"$out" 2>&1; then pass "$what"; else
		fail "$what"
		sed 's/^/        | /' "$out" | tail -n 25
	fi
	rm -f "$out"
}

cleanup() {
	local rc=$? _
	set +e
	if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
		# SIGTERM asks nspawn for a clean shutdown of the container.
		kill "$NSPAWN" 2>/dev/null || true
		for _ in $(seq 1 60); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$NSPAWN" 2>/dev/null || true
		wait "$NSPAWN" 2>/dev/null || true
	fi
	if [ -n "$ROOT" ]; then
		grep -o " $ROOT/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m"
		done
		if grep -q " ${ROOT}[/ ]" /proc/mounts; then
			echo "test-boot: error: mounts remain under $ROOT; not deleting it" >&2
			rc=1
		elif [ "${HEARTH_TEST_KEEP:-0}" = 1 ]; then
			echo "test-boot: root kept in $ROOT" >&2
		else
			rm -rf --one-file-system "$ROOT"
		fi
		rm -f "$ROOT.console"
	fi
	if [ -n "$OUT" ]; then
		rm -rf "$OUT"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command inside the booted container (all its namespaces).
in_ct() { nsenter -t "$LEADER" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# Runs a host command (curl) in the container's network namespace only.
in_net() { nsenter -t "$LEADER" -n -- "$@"; }

prepare() {
	command -v systemd-nspawn >/dev/null || {
		log "installing systemd-container"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container >/dev/null
	}
	command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
	if [ ! -s "$CACHE" ]; then
		[ -n "$TOY_DEB" ] || die "no cached root yet: give the hearth-toy .deb too (test-install.sh makes the root and tests both packages)"
		log "no cached root yet: running test-install.sh first makes it"
		"$HERE/test-install.sh" "$DEB" "$TOY_DEB" >/dev/null || die "test-install.sh failed; run it alone to see why"
	fi
	ROOT=$(mktemp -d /var/tmp/hearth-boot-root.XXXXXX)
	tar -C "$ROOT" --numeric-owner -xzf "$CACHE"
	chmod 755 "$ROOT"
	# A machine id, so journald keeps a journal the checks can read.
	systemd-machine-id-setup --root="$ROOT" >/dev/null 2>&1 || true
	# Not /tmp: systemd mounts a fresh tmpfs there at boot.
	cp "$DEB" "$ROOT/root/hearth.deb"
	OUT=$(mktemp -d)
}

boot() {
	local _ state
	log "booting $ROOT"
	systemd-nspawn -q -D "$ROOT" --boot --private-network --register=no --keep-unit \
		--console=pipe >"$ROOT.console" 2>&1 </dev/null &
	NSPAWN=$!
	for _ in $(seq 1 120); do
		LEADER=$(pgrep -P "$NSPAWN" -x systemd || true)
		[ -n "$LEADER" ] && break
		kill -0 "$NSPAWN" 2>/dev/null || { cat "$ROOT.console" >&2; die "systemd-nspawn exited"; }
		sleep 0.5
	done
	[ -n "$LEADER" ] || die "no systemd inside the container after 60 s"
	for _ in $(seq 1 120); do
		state=$(in_ct systemctl is-system-running 2>/dev/null || true)
		case "$state" in running|degraded) break ;; esac
		sleep 0.5
	done
	case "$state" in running|degraded) ;; *) die "the container did not finish booting (state '$state')" ;; esac
	log "container up (systemd pid $LEADER on the host, state $state)"
}

is_active() { [ "$(in_ct systemctl is-active hearth.service)" = active ]; }
prop_is() {
	local got
	got=$(in_ct systemctl show -P "$1" hearth.service)
	[ "$got" = "$2" ] || { echo "$1=$got, expected $2"; return 1; }
}
stat_is() {
	local got
	got=$(in_ct stat -c '%U:%G %a' "$1") || return 1
	[ "$got" = "$2 $3" ] || { echo "$1 is '$got', expected '$2 $3'"; return 1; }
}
journal_has_setup_code() {
	in_ct journalctl -u hearth.service -o cat --no-pager | grep -E 'setup code: [0-9]{4}-[0-9]{4}'
}
journal_no_timestamps() {
	# Under systemd the journal stamps each line; the hub must not add its own.
	local lines
	lines=$(in_ct journalctl -u hearth.service -o cat --no-pager _COMM=hearth)
	[ -n "$lines" ] || { echo "no log lines from hearth"; return 1; }
	if grep -E '^\s*(\x1b\[[0-9;]*m)*\[?[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}' <<<"$lines"; then
		echo "lines above start with a timestamp"
		return 1
	fi
}
data_private() {
	local loose
	loose=$(in_ct find "$DATA" -mindepth 1 \( -perm /077 -o ! -user hearth \) -printf '%M %u %p\n')
	[ -z "$loose" ] || { echo "$loose"; return 1; }
}
# The dpkg output exists, is not empty, and has no "not running" line. A
# bare `! grep` would also pass when the file is missing (grep's exit 2).
no_start_failure() {
	local rc=0
	[ -s "$1" ] || { echo "no dpkg output in $1"; return 1; }
	grep -n 'not running' "$1" || rc=$?
	[ "$rc" -eq 1 ]
}
# A fresh hub sends / to its setup page: exactly a 303 to /setup, so a hub
# that answers 500 (or anything else) fails.
https_answers() {
	local out
	out=$(in_net curl -ksS -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 10 https://127.0.0.1/) || return 1
	echo "HTTPS answer: $out"
	case "$out" in 303\ https://127.0.0.1/setup) ;; *) return 1 ;; esac
}
http_redirects() {
	local out
	out=$(in_net curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 10 http://127.0.0.1/) || return 1
	echo "$out"
	case "$out" in 30[1278]\ https://*) ;; *) return 1 ;; esac
}
# The password rule runs in a short-lived copy of the hub
# (`hearth check-password`) under the unit's sandbox: a setup with a common
# password is refused as weak, and the hub never fell back to checking in
# its own memory (its journal would say "password checker").
password_rule_in_sandbox() {
	local code out
	code=$(in_ct cat "$DATA/setup-code") || return 1
	out=$(in_net curl -ksS --max-time 30 -H 'content-type: application/json' \
		-d "{\"setup_code\":\"$code\",\"household\":\"Fernhill\",\"username\":\"mum\",\"password\":\"qwertyuiop123456\"}" \
		-w ' %{http_code}' https://127.0.0.1/api/v1/setup) || return 1
	echo "setup with a common password: $out" | sed -E 's/[0-9]{4}-[0-9]{4}/NNNN-NNNN/g'
	case "$out" in *weak_password*422) ;; *) return 1 ;; esac
	if in_ct journalctl -u hearth.service -o cat --no-pager | grep 'password checker'; then
		return 1
	fi
}
wait_active() {
	local _
	for _ in $(seq 1 60); do is_active && return 0; sleep 0.5; done
	in_ct systemctl status --no-pager hearth.service || true
	return 1
}

test_install() {
	log "install with systemd running"
	if in_ct dpkg -i /root/hearth.deb >"$OUT/install.out" 2>&1; then pass "dpkg -i succeeds"; else
		fail "dpkg -i succeeds"; sed 's/^/        | /' "$OUT/install.out"
		die "install failed; later checks would only repeat it"
	fi
	check "postinst reports no start failure" no_start_failure "$OUT/install.out"
	check "service is active (READY=1 received)" wait_active
	check "service is enabled" sh -c "[ \"\$(nsenter -t $LEADER -a systemctl is-enabled hearth.service)\" = enabled ]"
	check "Type=notify" prop_is Type notify
	check "watchdog set (WatchdogUSec=30s)" prop_is WatchdogUSec 30s
	check "runs as the hearth user" prop_is User hearth
	check "$DATA hearth:hearth 700" stat_is "$DATA" hearth:hearth 700
	check "setup-code hearth:hearth 600" stat_is "$DATA/setup-code" hearth:hearth 600
	check "journal has the setup code line" journal_has_setup_code
	check "journal lines carry no second timestamp" journal_no_timestamps
	check "data files private to hearth" data_private
	check "HTTPS answers on 443" https_answers
	check "port 80 redirects to HTTPS" http_redirects
	check "hearth doctor (service running)" in_ct hearth doctor --config "$CONF"
	check "the password rule runs in a separate process under the sandbox" password_rule_in_sandbox
	log "the hub's journal so far:"
	in_ct journalctl -u hearth.service -o short-monotonic --no-pager | tail -n 20 |
		sed -E 's/[0-9]{4}-[0-9]{4}/NNNN-NNNN/g; s/^/        | /' || true
}

test_watchdog() {
	# Outlive WatchdogSec once: a hub that stopped pinging would be killed.
	log "waiting 35 s to outlive the 30 s watchdog"
	local before after
	before=$(in_ct systemctl show -P MainPID hearth.service)
	sleep 35
	after=$(in_ct systemctl show -P MainPID hearth.service)
	check "watchdog pings keep the service alive (same pid after 35 s)" sh -c "[ '$before' = '$after' ] && [ '$after' != 0 ]"
	check "no restarts" prop_is NRestarts 0
}

test_upgrade_remove_purge() {
	log "upgrade, remove, purge"
	local before after
	before=$(in_ct systemctl show -P MainPID hearth.service)
	in_ct sh -c "echo marker >$DATA/marker"
	check "reinstall (upgrade path) succeeds" in_ct dpkg -i /root/hearth.deb
	check "service active after upgrade" wait_active
	after=$(in_ct systemctl show -P MainPID hearth.service)
	check "upgrade restarted the service" sh -c "[ '$before' != '$after' ]"
	check "upgrade kept the data" in_ct test -f "$DATA/marker"
	check "dpkg -r succeeds" in_ct dpkg -r hearth
	check "remove stopped the service" sh -c "! nsenter -t $LEADER -a systemctl is-active --quiet hearth.service"
	check "remove kept the data" in_ct test -f "$DATA/marker"
	check "dpkg -P succeeds" in_ct dpkg -P hearth
	check "purge deleted the data" in_ct test ! -e "$DATA"
}

prepare
boot
test_install
test_watchdog
test_upgrade_remove_purge
echo "test-boot: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
