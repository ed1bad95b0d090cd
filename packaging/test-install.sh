#!/usr/bin/env bash
# Install test for the Hearth Debian packages, the hub's (hearth) and the
# reference toy's (hearth-toy), in a clean Debian bookworm root.
#
#   packaging/test-install.sh path/to/hearth_VERSION_amd64.deb path/to/hearth-toy_VERSION_amd64.deb
#
# Runs as root. The first run debootstraps bookworm (minbase, plus adduser
# and systemd so the unit can be verified and enabled the way a Raspberry
# Pi OS install would) and caches it as a tarball; every run unpacks a
# fresh copy into a folder of its own under /var/tmp, mounts /proc inside,
# and always unmounts and deletes it on exit. systemd is not running inside
# the chroot, so the maintainer scripts must skip starting the service.
#
# Checked: the toy's package alone first (its files; no user, data
# directory, configuration, unit or maintainer script: the hub's package
# is not needed and nothing of it comes along); then the hub's
# install (files, owners, modes, no hearth-toy in it, the hearth user, the data
# directory, the conffile and its contents, the unit enabled and accepted by
# `systemd-analyze verify`, `hearth check-config` as the service user,
# `hearth doctor`), a reinstall over a changed conffile (data and
# configuration kept), remove (data kept), purge (data deleted, announced
# first; the toy's package untouched), a second install after the purge
# (the existing user is reused), and the upgrade from a hub package that
# still carried /usr/bin/hearth-toy (0.1.0): the toy's package alone is
# refused (Breaks), both together take the file over, in either order
# (Replaces).
#
# Environment:
#   HEARTH_TEST_CACHE   the root tarball (default /var/cache/hearth-test/bookworm-minbase.tar.gz)
#   HEARTH_TEST_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   HEARTH_TEST_KEEP=1  keep the unpacked root for inspection (printed at the end)
#
# Exits non-zero on any failure and ends with "N passed, N failed".
set -euo pipefail

usage="usage: packaging/test-install.sh path/to/hearth_VERSION_amd64.deb path/to/hearth-toy_VERSION_amd64.deb"
DEB=${1:?$usage}
TOY_DEB=${2:?$usage}
[ -f "$DEB" ] || { echo "test-install: error: no such file: $DEB" >&2; exit 2; }
[ -f "$TOY_DEB" ] || { echo "test-install: error: no such file: $TOY_DEB" >&2; exit 2; }
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
TOY_DEB=$(cd "$(dirname "$TOY_DEB")" && pwd)/$(basename "$TOY_DEB")
[ "$(id -u)" -eq 0 ] || { echo "test-install: error: must run as root (debootstrap, chroot)" >&2; exit 2; }

SUITE=bookworm
INCLUDE=adduser,systemd
CACHE=${HEARTH_TEST_CACHE:-/var/cache/hearth-test/$SUITE-minbase.tar.gz}
MIRROR=${HEARTH_TEST_MIRROR:-http://deb.debian.org/debian}
CONF=/etc/hearth/hearth.toml
DATA=/var/lib/hearth

PASSED=0
FAILED=0
ROOT=""

log() { echo "test-install: $*" >&2; }
die() { echo "test-install: error: $*" >&2; exit 1; }
pass() { PASSED=$((PASSED + 1)); echo "  ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL  $*"; }
check() {
	# check DESCRIPTION COMMAND...: runs COMMAND, counts a pass or a failure.
	local what=$1
	shift
	if "$@" >/tmp/hearth-test-check.$$ 2>&1; then
		pass "$what"
	else
		fail "$what"
		sed 's/^/        | /' /tmp/hearth-test-check.$$ | tail -n 20
	fi
	rm -f /tmp/hearth-test-check.$$
}

cleanup() {
	local rc=$?
	set +e
	if [ -n "$ROOT" ]; then
		# Unmount everything under the root, deepest first, before deleting.
		grep -o " $ROOT/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m"
		done
		if grep -q " $ROOT/" /proc/mounts; then
			echo "test-install: error: mounts remain under $ROOT; not deleting it" >&2
			rc=1
		elif [ "${HEARTH_TEST_KEEP:-0}" = 1 ]; then
			echo "test-install: root kept in $ROOT" >&2
		else
			rm -rf --one-file-system "$ROOT"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

make_cache() {
	[ -s "$CACHE" ] && return 0
	command -v debootstrap >/dev/null || {
		log "installing debootstrap"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	}
	local tmp
	tmp=$(mktemp -d /var/tmp/hearth-debootstrap.XXXXXX)
	log "debootstrap $SUITE (minbase, +$INCLUDE) into $tmp; cached as $CACHE afterwards"
	if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1; then
		tail -n 30 "$tmp.log" >&2
		grep -o " $tmp/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
		rm -rf --one-file-system "$tmp" "$tmp.log"
		die "debootstrap failed (see above)"
	fi
	rm -f "$tmp.log"
	rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_*
	chmod 755 "$tmp"
	mkdir -p "$(dirname "$CACHE")"
	tar -C "$tmp" --numeric-owner -czf "$CACHE.tmp" .
	mv "$CACHE.tmp" "$CACHE"
	rm -rf --one-file-system "$tmp"
}

setup_root() {
	ROOT=$(mktemp -d /var/tmp/hearth-test-root.XXXXXX)
	tar -C "$ROOT" --numeric-owner -xzf "$CACHE"
	# A root directory as on a real system (mktemp made it 0700).
	chmod 755 "$ROOT"
	mount -t proc proc "$ROOT/proc"
	# Belt and braces: nothing may start a service from inside the chroot.
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 755 "$ROOT/usr/sbin/policy-rc.d"
	[ ! -e "$ROOT/run/systemd/system" ] || die "the root has /run/systemd/system; it must look like a system without a running systemd"
	cp "$DEB" "$ROOT/tmp/hearth.deb"
	cp "$TOY_DEB" "$ROOT/tmp/hearth-toy.deb"
}

# stat_is PATH OWNER:GROUP MODE
stat_is() {
	local got
	got=$(in_root stat -c '%U:%G %a' "$1") || return 1
	[ "$got" = "$2 $3" ] || { echo "$1 is '$got', expected '$2 $3'"; return 1; }
}
grep_in() { grep -qE "$2" "$ROOT$1" || { echo "$1 has no line matching: $2"; return 1; }; }
# Paths are looked up inside the root, so absolute symlinks resolve there.
absent() { ! in_root test -e "$1" -o -L "$1" || { echo "$1 still exists"; return 1; }; }
present() { in_root test -e "$1" || { echo "$1 is missing"; return 1; }; }
output_has() { grep -qF "$2" "$1" || { echo "output lacks: $2"; cat "$1"; return 1; }; }

user_ok() {
	local line uid home shell
	line=$(in_root getent passwd hearth) || { echo "no user hearth"; return 1; }
	IFS=: read -r _ _ uid _ _ home shell <<<"$line"
	[ "$uid" -lt 1000 ] || { echo "uid $uid is not a system uid"; return 1; }
	[ "$home" = "$DATA" ] || { echo "home is $home"; return 1; }
	case "$shell" in */nologin|/bin/false) ;; *) echo "shell is $shell"; return 1 ;; esac
	in_root getent group hearth >/dev/null || { echo "no group hearth"; return 1; }
	[ "$(in_root id -gn hearth)" = hearth ] || { echo "primary group of hearth is not hearth"; return 1; }
}

# What the package NAME installed, one path a line.
owned_by() { in_root dpkg-query -L "$1"; }
# owned_by but not: PATH is not among package NAME's files.
not_owned_by() {
	if owned_by "$1" | grep -qxF "$2"; then echo "package $1 has $2"; return 1; fi
	owned_by "$1" >/dev/null || { echo "package $1 is not installed"; return 1; }
}
owner_is() {
	local got
	got=$(in_root dpkg-query -S "$1") || return 1
	[ "$got" = "$2: $1" ] || { echo "dpkg-query -S $1: $got, expected $2"; return 1; }
}
# The toy's package installs only /usr/bin, /usr/share and nothing else.
toy_files_only_in_usr() {
	local stray
	stray=$(owned_by hearth-toy | grep -vE '^/(\.|usr|usr/bin(/.*)?|usr/share(/.*)?)$' || true)
	[ -z "$stray" ] || { echo "outside /usr/bin and /usr/share: $stray"; return 1; }
	owned_by hearth-toy | grep -qx /usr/bin/hearth-toy || { echo "no /usr/bin/hearth-toy listed"; return 1; }
}
no_maintainer_scripts() {
	local f found=0
	for f in preinst postinst prerm postrm config templates conffiles; do
		if in_root test -e "/var/lib/dpkg/info/$1.$f"; then echo "$1 has a $f"; found=1; fi
	done
	[ "$found" -eq 0 ]
}
no_conffiles() {
	local c
	# shellcheck disable=SC2016 # ${Conffiles} is dpkg-query's, not ours
	c=$(in_root dpkg-query -W -f='${Conffiles}' "$1") || return 1
	[ -z "$c" ] || { echo "conffiles: $c"; return 1; }
}
deb_lacks() {
	# deb_lacks FILE.deb PATH: the archive has no member PATH.
	if dpkg-deb -c "$1" | awk '{print $6}' | grep -qxF "./$2"; then echo "$(basename "$1") contains ./$2"; return 1; fi
	dpkg-deb -c "$1" | awk '{print $6}' | grep -q '^\./usr/bin/' || { echo "cannot list $(basename "$1")"; return 1; }
}
field_is() {
	local got
	got=$(dpkg-deb -f "$1" "$2") || return 1
	[ "$got" = "$3" ] || { echo "$2: '$got', expected '$3'"; return 1; }
}

installed_version_is() {
	local got
	# shellcheck disable=SC2016 # ${Version} is dpkg-query's, not ours
	got=$(in_root dpkg-query -W -f='${Version}' "$1") || return 1
	[ "$got" = "$2" ] || { echo "$1 $got is installed, expected $2"; return 1; }
}

conffile_registered() {
	# shellcheck disable=SC2016 # ${Conffiles} is dpkg-query's, not ours
	in_root dpkg-query -W -f='${Conffiles}\n' hearth | grep -q "^ $CONF "
}

as_hearth() { chroot --userspec=hearth:hearth "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

doctor() {
	if ! in_root hearth doctor --help >/dev/null 2>&1; then
		echo "'hearth doctor' does not exist yet (lead's part of issue 5)"
		return 1
	fi
	in_root hearth doctor --config "$CONF"
}

test_toy_alone() {
	log "install the toy's package alone"
	check "hub .deb does not carry /usr/bin/hearth-toy" deb_lacks "$DEB" usr/bin/hearth-toy
	# build.rs: packed relative relocations (BENCHMARKS.md (m)), so glibc 2.36.
	check "hub .deb: hearth has packed relative relocations (DT_RELR)" sh -c "t=\$(mktemp) && dpkg-deb --fsys-tarfile '$DEB' | tar -xO ./usr/bin/hearth >\"\$t\" && readelf -d \"\$t\" | grep -q '(RELR)'; r=\$?; rm -f \"\$t\"; exit \$r"
	check "hub .deb: depends on libc6 (>= 2.36)" sh -c "dpkg-deb -f '$DEB' Depends | grep -q 'libc6 (>= 2.36)'"
	check "toy .deb: depends on libc6 (>= 2.36)" sh -c "dpkg-deb -f '$TOY_DEB' Depends | grep -q 'libc6 (>= 2.36)'"
	check "hub .deb does not carry the toy's man page" deb_lacks "$DEB" usr/share/man/man1/hearth-toy.1.gz
	check "toy .deb does not carry /usr/bin/hearth" deb_lacks "$TOY_DEB" usr/bin/hearth
	check "toy .deb does not carry the unit" deb_lacks "$TOY_DEB" usr/lib/systemd/system/hearth.service
	check "toy .deb: Package hearth-toy" field_is "$TOY_DEB" Package hearth-toy
	check "toy .deb: Breaks hearth (<< 0.2.0)" field_is "$TOY_DEB" Breaks "hearth (<< 0.2.0)"
	check "toy .deb: Replaces hearth (<< 0.2.0)" field_is "$TOY_DEB" Replaces "hearth (<< 0.2.0)"
	check "toy .deb: its own one-line description" sh -c "dpkg-deb -f '$TOY_DEB' Description | head -n1 | grep -x 'reference toy client for the Hearth voice hub'"
	check "toy .deb: depends on neither hearth nor adduser" sh -c "! dpkg-deb -f '$TOY_DEB' Depends | grep -E 'hearth|adduser'"
	if in_root dpkg -i /tmp/hearth-toy.deb >"$ROOT/tmp/toy.out" 2>&1; then pass "dpkg -i hearth-toy succeeds without the hub"; else
		fail "dpkg -i hearth-toy succeeds without the hub"; sed 's/^/        | /' "$ROOT/tmp/toy.out"; return 0
	fi
	check "/usr/bin/hearth-toy root:root 755" stat_is /usr/bin/hearth-toy root:root 755
	check "man page hearth-toy.1.gz" stat_is /usr/share/man/man1/hearth-toy.1.gz root:root 644
	check "toy man page is roff" sh -c "zcat '$ROOT/usr/share/man/man1/hearth-toy.1.gz' | grep -q '^\.TH'"
	check "toy copyright file" stat_is /usr/share/doc/hearth-toy/copyright root:root 644
	check "toy copyright names hearth-toy" grep_in /usr/share/doc/hearth-toy/copyright 'hearth-toy binary'
	check "toy changelog.Debian.gz" stat_is /usr/share/doc/hearth-toy/changelog.Debian.gz root:root 644
	check "toy changelog is the toy's" sh -c "zcat '$ROOT/usr/share/doc/hearth-toy/changelog.Debian.gz' | head -n1 | grep -q '^hearth-toy ('"
	check "toy lintian overrides" stat_is /usr/share/lintian/overrides/hearth-toy root:root 644
	check "hearth-toy --version" in_root hearth-toy --version
	check "toy files only under /usr/bin and /usr/share" toy_files_only_in_usr
	check "toy has no maintainer scripts" no_maintainer_scripts hearth-toy
	check "toy has no conffiles" no_conffiles hearth-toy
	check "toy alone: no hub binary" absent /usr/bin/hearth
	check "toy alone: no unit" absent /usr/lib/systemd/system/hearth.service
	check "toy alone: no configuration" absent /etc/hearth
	check "toy alone: no data directory" absent "$DATA"
	check "toy alone: no hearth user" sh -c "! chroot '$ROOT' getent passwd hearth"
	# shellcheck disable=SC2016 # expanded by the shell in the root
	check "dpkg --audit is clean (toy)" in_root sh -c '[ -z "$(dpkg --audit)" ]'
}

test_install() {
	log "install the hub's package beside it"
	if in_root dpkg -i /tmp/hearth.deb >"$ROOT/tmp/install.out" 2>&1; then pass "dpkg -i succeeds"; else
		fail "dpkg -i succeeds"; sed 's/^/        | /' "$ROOT/tmp/install.out"; return 0
	fi
	check "postinst prints the address" output_has "$ROOT/tmp/install.out" "https://hearth.local"
	check "postinst says how to read the setup code" output_has "$ROOT/tmp/install.out" "sudo cat $DATA/setup-code"
	# shellcheck disable=SC2016 # expanded by the shell in the root
	check "dpkg --audit is clean" in_root sh -c '[ -z "$(dpkg --audit)" ]'
	check "/usr/bin/hearth root:root 755" stat_is /usr/bin/hearth root:root 755
	check "hub package has no /usr/bin/hearth-toy" not_owned_by hearth /usr/bin/hearth-toy
	check "hub package has no hearth-toy.1.gz" not_owned_by hearth /usr/share/man/man1/hearth-toy.1.gz
	check "/usr/bin/hearth-toy belongs to hearth-toy" owner_is /usr/bin/hearth-toy hearth-toy
	check "unit root:root 644" stat_is /usr/lib/systemd/system/hearth.service root:root 644
	check "man page hearth.1.gz" stat_is /usr/share/man/man1/hearth.1.gz root:root 644
	check "copyright file" stat_is /usr/share/doc/hearth/copyright root:root 644
	check "changelog.Debian.gz" stat_is /usr/share/doc/hearth/changelog.Debian.gz root:root 644
	check "man page is roff" sh -c "zcat '$ROOT/usr/share/man/man1/hearth.1.gz' | grep -q '^\.TH'"
	check "conffile $CONF root:root 644" stat_is "$CONF" root:root 644
	check "conffile registered with dpkg" conffile_registered
	check "config: data_dir /var/lib/hearth" grep_in "$CONF" '^data_dir *= *"/var/lib/hearth"'
	check "config: listen on 443" grep_in "$CONF" '^listen *= *"[^"]*:443"'
	check "config: plain-HTTP redirect on 80" grep_in "$CONF" '^redirect_http_listen *= *"[^"]*:80"'
	check "system user hearth" user_ok
	check "$DATA hearth:hearth 700" stat_is "$DATA" hearth:hearth 700
	check "unit enabled (multi-user.target.wants)" present /etc/systemd/system/multi-user.target.wants/hearth.service
	check "no service started in the chroot" absent "$DATA/setup-code"
	check "systemd-analyze verify accepts the unit" in_root systemd-analyze verify --man=no /usr/lib/systemd/system/hearth.service
	check "hardening exposure <= 1.5" in_root systemd-analyze security --offline=true --threshold=15 --no-pager /usr/lib/systemd/system/hearth.service
	check "hearth --version" in_root hearth --version
	check "hearth check-config (as the hearth user)" as_hearth hearth check-config --config "$CONF"
	check "hearth doctor" doctor
}

test_reinstall() {
	log "reinstall over a changed conffile"
	echo "hearth data" >"$ROOT$DATA/marker"
	echo "# local change kept across upgrades" >>"$ROOT$CONF"
	if in_root dpkg -i /tmp/hearth.deb >"$ROOT/tmp/reinstall.out" 2>&1; then pass "reinstall succeeds"; else
		fail "reinstall succeeds"; sed 's/^/        | /' "$ROOT/tmp/reinstall.out"; return 0
	fi
	check "reinstall keeps the data" present "$DATA/marker"
	check "reinstall keeps the local config change" grep_in "$CONF" '^# local change kept across upgrades$'
	check "reinstall says data was kept" output_has "$ROOT/tmp/reinstall.out" "were kept"
	check "$DATA still hearth:hearth 700" stat_is "$DATA" hearth:hearth 700
}

test_remove_purge() {
	log "remove, purge, install again"
	check "dpkg -r succeeds" in_root dpkg -r hearth
	check "remove deletes the binary" absent /usr/bin/hearth
	check "remove keeps the data" present "$DATA/marker"
	check "remove keeps the conffile" present "$CONF"
	if in_root dpkg -P hearth >"$ROOT/tmp/purge.out" 2>&1; then pass "dpkg -P succeeds"; else
		fail "dpkg -P succeeds"; sed 's/^/        | /' "$ROOT/tmp/purge.out"
	fi
	check "purge announces the deletion" output_has "$ROOT/tmp/purge.out" "deleting all Hearth data in $DATA"
	check "purge deletes the data" absent "$DATA"
	check "purge deletes the conffile" absent "$CONF"
	check "purge removes the enable symlink" absent /etc/systemd/system/multi-user.target.wants/hearth.service
	check "the toy's package stays installed" owner_is /usr/bin/hearth-toy hearth-toy
	check "hearth-toy --version after the hub's purge" in_root hearth-toy --version
	check "install after purge (existing user)" in_root dpkg -i /tmp/hearth.deb
	check "$DATA recreated hearth:hearth 700" stat_is "$DATA" hearth:hearth 700
	check "dpkg -r hearth-toy succeeds" in_root dpkg -r hearth-toy
	check "toy removal deletes /usr/bin/hearth-toy" absent /usr/bin/hearth-toy
	check "toy removal leaves the hub" present /usr/bin/hearth
}

# A hub package as 0.1.0 shipped it, reduced to what matters here: it owns
# /usr/bin/hearth-toy.
make_old_hub() {
	local pkg=$ROOT/tmp/old-hub
	mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin"
	printf '#!/bin/sh\necho old hearth-toy\n' >"$pkg/usr/bin/hearth-toy"
	chmod 755 "$pkg/usr/bin/hearth-toy"
	cat >"$pkg/DEBIAN/control" <<-EOF
		Package: hearth
		Version: 0.1.0-1
		Architecture: $(in_root dpkg --print-architecture)
		Maintainer: Hearth developers <hearth@example.invalid>
		Description: Hearth hub 0.1.0 (test stand-in that carries hearth-toy)
	EOF
	dpkg-deb --root-owner-group -b "$pkg" "$ROOT/tmp/old-hub.deb" >/dev/null
}

test_upgrade_from_combined() {
	log "upgrade from a hub package that carried the toy"
	check "purge the hub before" in_root dpkg -P hearth
	make_old_hub
	check "install a 0.1.0 hub that carries hearth-toy" in_root dpkg -i /tmp/old-hub.deb
	check "/usr/bin/hearth-toy belongs to the old hearth" owner_is /usr/bin/hearth-toy hearth
	if in_root dpkg -i /tmp/hearth-toy.deb >"$ROOT/tmp/breaks.out" 2>&1; then
		fail "the toy's package alone is refused while the old hub is there (Breaks)"
		in_root dpkg -P hearth-toy >/dev/null 2>&1 || true
	else
		check "the toy's package alone is refused while the old hub is there (Breaks)" output_has "$ROOT/tmp/breaks.out" "breaks hearth"
	fi
	check "dpkg -i hearth hearth-toy together succeeds" in_root dpkg -i /tmp/hearth.deb /tmp/hearth-toy.deb
	# shellcheck disable=SC2016 # expanded by the shell in the root
	check "dpkg --audit is clean after the upgrade" in_root sh -c '[ -z "$(dpkg --audit)" ]'
	check "/usr/bin/hearth-toy now belongs to hearth-toy" owner_is /usr/bin/hearth-toy hearth-toy
	check "it is the new toy" sh -c "chroot '$ROOT' hearth-toy --version | grep -v 'old hearth-toy'"
	check "the new hub is installed" installed_version_is hearth "$(dpkg-deb -f "$DEB" Version)"
	# The other order, which apt may choose: the toy's package unpacked
	# first takes the file from the old hub (Replaces) while the old hub is
	# deconfigured (Breaks), then the new hub.
	check "purge both" in_root dpkg -P hearth hearth-toy
	check "install the 0.1.0 hub again" in_root dpkg -i /tmp/old-hub.deb
	check "dpkg -i hearth-toy hearth, toy first (--auto-deconfigure, as apt does)" in_root dpkg --auto-deconfigure -i /tmp/hearth-toy.deb /tmp/hearth.deb
	check "/usr/bin/hearth-toy belongs to hearth-toy (toy first)" owner_is /usr/bin/hearth-toy hearth-toy
	check "the new hub is installed (toy first)" installed_version_is hearth "$(dpkg-deb -f "$DEB" Version)"
	# shellcheck disable=SC2016 # expanded by the shell in the root
	check "dpkg --audit is clean (toy first)" in_root sh -c '[ -z "$(dpkg --audit)" ]'
}

make_cache
setup_root
log "testing $(basename "$DEB") and $(basename "$TOY_DEB") in $ROOT"
test_toy_alone
test_install
test_reinstall
test_remove_purge
test_upgrade_from_combined
echo "test-install: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
