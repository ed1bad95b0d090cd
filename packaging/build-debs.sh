#!/usr/bin/env bash
# Build the Hearth Debian packages with cargo-deb: per architecture, the
# hub (`hearth`, [package.metadata.deb] in Cargo.toml) and the reference toy
# (`hearth-toy`, the variant `toy`).
#
#   packaging/build-debs.sh [amd64|arm64|armhf|all]...   (default: amd64)
#
# amd64 is built natively; arm64 (aarch64-unknown-linux-gnu) and armhf
# (armv7-unknown-linux-gnueabihf: Pi 2/3/4/5/Zero 2 W on 32-bit Raspberry Pi
# OS) are cross-built with rustup targets and Debian's cross compilers, then
# smoke-tested under qemu-user: `hearth --version` and `hearth-toy
# --version` from the unpacked packages, then a short `serve` answering one
# HTTPS request. Anything missing (cargo-deb, rustup targets, cross
# compilers, qemu-user) is installed first; apt-get needs root.
#
# The man pages come from the host-built binaries (`hearth man`), so a host
# release build always happens first.
#
# Environment:
#   CARGO_TARGET_DIR   honoured (default: ./target)
#   HEARTH_SKIP_SMOKE=1  skip the serve smoke tests (the --version check stays)
#   HEARTH_NICE        niceness for builds (default 19: the build box is shared)
#
# The .deb files are written to $CARGO_TARGET_DIR/debs/ and listed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET_DIR
NICE=${HEARTH_NICE:-19}
# The hub's link map (build.rs), for code_order_report. Set for every build
# of this script, so that cargo deb finds the release build current.
export BUILD_HEARTH_LINK_MAP=$TARGET_DIR/hearth.map
OUT=$TARGET_DIR/debs
MAN_DIR=$ROOT/packaging/build

die() { echo "build-debs: error: $*" >&2; exit 1; }
log() { echo "build-debs: $*" >&2; }

APT_UPDATED=0
apt_install() {
	# Installs the given Debian packages if any is missing.
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing Debian packages ${missing[*]}; install them as root (apt-get install ${missing[*]})"
	if [ $APT_UPDATED -eq 0 ]; then
		apt-get update -qq
		APT_UPDATED=1
	fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_cargo_deb() {
	if ! cargo deb --version >/dev/null 2>&1; then
		log "installing cargo-deb"
		nice -n "$NICE" cargo install cargo-deb --locked
	fi
	apt_install dpkg-dev
}

# rust triple, Debian arch, cross gcc prefix, qemu binary
arch_info() {
	case "$1" in
		amd64) echo "x86_64-unknown-linux-gnu amd64 - -" ;;
		arm64) echo "aarch64-unknown-linux-gnu arm64 aarch64-linux-gnu qemu-aarch64" ;;
		armhf) echo "armv7-unknown-linux-gnueabihf armhf arm-linux-gnueabihf qemu-arm" ;;
		*) die "unknown architecture '$1' (use amd64, arm64, armhf or all)" ;;
	esac
}

check_inputs() {
	[ -f packaging/hearth.toml ] || die "packaging/hearth.toml (the shipped config sample) is missing"
	local cargo_version deb_version
	cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
	deb_version=$(sed -n '1s/^hearth (\([^)]*\)).*/\1/p' packaging/debian/changelog)
	[ "$deb_version" = "$cargo_version-1" ] ||
		die "packaging/debian/changelog starts with version '$deb_version' but Cargo.toml says '$cargo_version' (expected '$cargo_version-1'): add a changelog entry"
	toy_version=$(sed -n '1s/^hearth-toy (\([^)]*\)).*/\1/p' packaging/toy/changelog)
	[ "$toy_version" = "$cargo_version-1" ] ||
		die "packaging/toy/changelog starts with version '$toy_version' (package hearth-toy) but Cargo.toml says '$cargo_version' (expected '$cargo_version-1'): add a changelog entry"
	DEB_VERSION=$deb_version
}

build_host() {
	log "host release build"
	nice -n "$NICE" cargo build --release --locked --bins
	code_order_report
}

# How much of packaging/hearth.order (the hub's code in the order a running
# hub needs it, laid out by build.rs; BENCHMARKS.md (o)) the host build
# found, from its link map. Symbol names change with a Rust or dependency
# upgrade; names the build lacks are skipped, so an outdated order is no
# error, only less of the code laid out: rerun benches/code-order.sh.
code_order_report() {
	local order=packaging/hearth.order total found
	[ -f "$order" ] && [ -f "$BUILD_HEARTH_LINK_MAP" ] || return 0
	total=$(grep -vc '^#' "$order")
	found=$(grep -o ':(\.text\.[^)]*)' "$BUILD_HEARTH_LINK_MAP" | sed 's/^:(\.text\.\(unlikely\.\|startup\.\|hot\.\)\{0,1\}//; s/)$//' |
		sort -u | comm -12 - <(grep -v '^#' "$order" | sort -u) | wc -l)
	if [ $((found * 10)) -ge $((total * 9)) ]; then
		log "code order: $found of $total functions of $order are in this build"
	else
		log "WARNING: code order: only $found of $total functions of $order are in this build: it is outdated, run benches/code-order.sh"
	fi
}

# Writes a gzipped man page for one binary from its `man` subcommand.
man_page() {
	local bin=$1 name=$2 out=$MAN_DIR/$2.1
	if ! "$bin" man >"$out.tmp" 2>"$out.err" || ! grep -q '^\.TH' "$out.tmp"; then
		if [ "$name" = hearth-toy ] && toy_man_from_help "$bin" "$out.tmp"; then
			log "note: 'hearth-toy man' is not available; hearth-toy.1 was made from 'hearth-toy --help'"
		elif [ "$name" = hearth-toy ]; then
			# The toy is still a placeholder: ship a minimal page rather than
			# block the hub's package on it.
			log "WARNING: hearth-toy has neither 'man' nor '--help'; shipping a minimal hearth-toy.1"
			toy_man_minimal "$out.tmp"
		else
			cat "$out.err" >&2 || true
			rm -f "$out.tmp" "$out.err"
			die "'$name man' did not print a roff man page; the CLI must provide the 'man' subcommand (clap_mangen) before packaging"
		fi
	fi
	rm -f "$out.err"
	mv "$out.tmp" "$out"
	gzip -9nf "$out"
}

# A plain man page from --help, for a binary without a `man` subcommand.
toy_man_from_help() {
	local bin=$1 out=$2 help version
	help=$("$bin" --help 2>/dev/null) || return 1
	[ -n "$help" ] || return 1
	version=$("$bin" --version 2>/dev/null || echo "hearth-toy")
	{
		echo ".TH HEARTH-TOY 1 \"\" \"$version\" \"Hearth\""
		echo ".SH NAME"
		echo "hearth-toy \\- reference toy client for the Hearth voice hub"
		echo ".SH DESCRIPTION"
		echo ".nf"
		printf '%s\n' "$help" | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/"
		echo ".fi"
		echo ".SH SEE ALSO"
		echo "hearth(1)"
	} >"$out"
}

toy_man_minimal() {
	{
		echo '.TH HEARTH-TOY 1 "" "hearth-toy" "Hearth"'
		echo ".SH NAME"
		echo "hearth-toy \\- reference toy client for the Hearth voice hub"
		echo ".SH DESCRIPTION"
		echo "The reference toy: it finds the hub with mDNS, pairs with it and exchanges voice messages."
		echo ".SH SEE ALSO"
		echo "hearth(1)"
	} >"$1"
}

make_man_pages() {
	mkdir -p "$MAN_DIR"
	man_page "$TARGET_DIR/release/hearth" hearth
	man_page "$TARGET_DIR/release/hearth-toy" hearth-toy
	log "man pages in $MAN_DIR"
}

setup_cross() {
	local triple=$1 deb_arch=$2 prefix=$3 qemu=$4 upper
	rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
	apt_install "gcc-$prefix" "g++-$prefix" "libc6-dev-$deb_arch-cross" qemu-user cmake
	command -v "$qemu" >/dev/null || die "$qemu not found after installing qemu-user"
	upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
	local lower=${triple//-/_}
	export "CARGO_TARGET_${upper}_LINKER=$prefix-gcc"
	export "CC_${lower}=$prefix-gcc" "CXX_${lower}=$prefix-g++" "AR_${lower}=$prefix-ar"
	export HOST_CC=gcc
	if [ "$deb_arch" = armhf ]; then
		# Debian's armhf compiler defaults to -mfpu=vfpv3-d16 (no NEON), and
		# libopus's CMake then fails on its NEON intrinsics files. Every
		# ARMv7 Raspberry Pi (2, 3, 4, 5, Zero 2 W) has NEON.
		export "CFLAGS_${lower}=-mfpu=neon" "CXXFLAGS_${lower}=-mfpu=neon"
	fi
}

# edit_control DEB SED-SCRIPT: rewrites DEB with its control file passed
# through sed, keeping cargo-deb's file timestamps.
edit_control() {
	local deb=$1 script=$2 tmp
	tmp=$(mktemp -d)
	dpkg-deb -R "$deb" "$tmp/pkg"
	# cargo-deb's timestamp, from the control file before it is edited.
	touch -r "$tmp/pkg/DEBIAN/control" "$tmp/stamp"
	sed -i "$script" "$tmp/pkg/DEBIAN/control"
	# Keep cargo-deb's timestamps (unpacking gave the directories new ones).
	find "$tmp/pkg" -exec touch -h -r "$tmp/stamp" {} +
	dpkg-deb --root-owner-group -Zxz -b "$tmp/pkg" "$deb" >/dev/null
	rm -rf "$tmp"
}

# dpkg-shlibdeps, run for a foreign architecture, writes dependencies such as
# "libc6:arm64"; in a package of that very architecture the qualifier only
# adds noise (and is not what a native build writes), so drop it.
drop_own_arch_qualifiers() {
	local deb=$1 deb_arch=$2
	dpkg-deb -f "$deb" Depends | grep -q ":$deb_arch\b" || return 0
	edit_control "$deb" "/^Depends:/s/:$deb_arch\b//g"
	log "Depends: $(dpkg-deb -f "$deb" Depends)"
}

# cargo-deb takes every package's one-line description from Cargo.toml's
# `description` (the hub's, which it also wraps at 79 characters) and has no
# per-variant key for it: give the toy's package its own, up to the first
# line of its extended description.
TOY_SYNOPSIS="reference toy client for the Hearth voice hub"
TOY_LONG_START="Hearth lets parents"
set_toy_synopsis() {
	edit_control "$1" "/^Description: /,/^ $TOY_LONG_START/{/^Description: /{s/.*/Description: $TOY_SYNOPSIS/;b;};/^ $TOY_LONG_START/b;d;}"
	case "$(dpkg-deb -f "$1" Description | head -n2 | tr '\n' '|')" in
		"$TOY_SYNOPSIS| $TOY_LONG_START"*) ;;
		*) die "could not set the description of $1 (Cargo.toml's toy extended-description must start with '$TOY_LONG_START')" ;;
	esac
}

# Unpacks the two .debs and checks their binaries: `hearth-toy --version`
# from the toy's, `hearth --version` from the hub's, then (unless
# HEARTH_SKIP_SMOKE=1) the hub's `serve` with the shipped config on a
# loopback port must answer one HTTPS request.
smoke_test() (
	deb=$1 toy_deb=$2 runner=$3 ok=0
	tmp=$(mktemp -d)
	trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
	dpkg-deb -x "$toy_deb" "$tmp/toy"
	log "smoke: $(basename "$toy_deb"): --version"
	# shellcheck disable=SC2086 # $runner is a command prefix, split on purpose
	$runner "$tmp/toy/usr/bin/hearth-toy" --version || die "smoke: '$runner hearth-toy --version' failed for $toy_deb"
	dpkg-deb -x "$deb" "$tmp/root"
	log "smoke: $(basename "$deb"): --version"
	# shellcheck disable=SC2086
	$runner "$tmp/root/usr/bin/hearth" --version || die "smoke: '$runner hearth --version' failed for $deb"
	[ "${HEARTH_SKIP_SMOKE:-0}" = 1 ] && return 0
	port=$((20000 + RANDOM % 20000))
	mkdir -m 0700 "$tmp/data"
	HEARTH_REDIRECT_HTTP_LISTEN='' $runner "$tmp/root/usr/bin/hearth" serve \
		--config "$tmp/root/etc/hearth/hearth.toml" --data-dir "$tmp/data" \
		--listen "127.0.0.1:$port" --no-mdns >"$tmp/serve.log" 2>&1 &
	pid=$!
	# Emulated first starts generate keys slowly: poll for up to 120 s.
	for i in $(seq 1 240); do
		if curl -ksS -o /dev/null --max-time 5 "https://127.0.0.1:$port/" 2>/dev/null; then ok=1; break; fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if [ $ok -ne 1 ]; then
		sed 's/^/  serve: /' "$tmp/serve.log" >&2
		die "smoke: hearth serve from $(basename "$deb") did not answer HTTPS on 127.0.0.1:$port"
	fi
	log "smoke: $(basename "$deb"): serve answered HTTPS after ~$((i / 2)) s"
)

build_arch() {
	local arch=$1 triple deb_arch prefix qemu start deb toy_deb
	read -r triple deb_arch prefix qemu <<<"$(arch_info "$arch")"
	start=$(date +%s)
	deb=$OUT/hearth_${DEB_VERSION}_$deb_arch.deb
	toy_deb=$OUT/hearth-toy_${DEB_VERSION}_$deb_arch.deb
	mkdir -p "$OUT"
	rm -f "$deb" "$toy_deb"
	if [ "$arch" = amd64 ]; then
		nice -n "$NICE" cargo deb --locked -o "$deb"
		nice -n "$NICE" cargo deb --locked --variant toy -o "$toy_deb"
		set_toy_synopsis "$toy_deb"
		smoke_test "$deb" "$toy_deb" ""
	else
		setup_cross "$triple" "$deb_arch" "$prefix" "$qemu"
		nice -n "$NICE" cargo deb --locked --target "$triple" -o "$deb"
		nice -n "$NICE" cargo deb --locked --target "$triple" --variant toy -o "$toy_deb"
		drop_own_arch_qualifiers "$deb" "$deb_arch"
		drop_own_arch_qualifiers "$toy_deb" "$deb_arch"
		set_toy_synopsis "$toy_deb"
		smoke_test "$deb" "$toy_deb" "$qemu -L /usr/$prefix"
	fi
	log "$arch: $deb and $toy_deb built and smoke-tested in $(($(date +%s) - start)) s"
}

main() {
	local arches=() a
	[ $# -eq 0 ] && set -- amd64
	for a in "$@"; do
		case "$a" in
			all) arches+=(amd64 arm64 armhf) ;;
			-h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
			*) arch_info "$a" >/dev/null; arches+=("$a") ;;
		esac
	done
	check_inputs
	ensure_cargo_deb
	apt_install curl
	build_host
	make_man_pages
	for a in "${arches[@]}"; do build_arch "$a"; done
	ls -l "$OUT"/*.deb
}

main "$@"
