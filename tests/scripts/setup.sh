#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install and fetch everything kchat's build and tests need, idempotently.
#
# - bookworm packages (compilers, kernel build deps, QEMU from bookworm-backports);
# - Debian's linux-source-7.3 and rust-src 1.95.0 from trixie-backports, through a
#   private apt configuration under the cache (the machine's sources are never
#   pointed at trixie), unpacked with dpkg -x;
# - bindgen-cli, built into the cache.
#
# Safe to run again: each step checks what is already there.
set -euo pipefail
. "$(dirname "$0")/common.sh"

need_root_for_apt() {
	[ "$(id -u)" = 0 ] || die "missing packages ($*) and not root: install them with apt-get, or rerun as root"
}

# Packages from bookworm itself. The IRC servers (ngircd 26.1, InspIRCd 3.15) are
# benchmark peers and the IRC clients (irssi 1.4.3, WeeChat 3.8, ii 1.8, sic 1.1) test
# kchat's IRC front end (the irc-clients host step; weechat-plugins has the fifo and
# trigger plugins that script headless WeeChat); nats-server (2.9.10) joins kchat nodes in
# the cluster case, the cluster bench, `make run CLUSTER=N` and the bridge's host tests
# (the guest runs the host's binary). RUNLEVEL=1 below keeps the servers' own daemons from
# starting, as for redis-server.
HOST_PKGS=(build-essential bc bison flex libelf-dev libssl-dev cpio kmod
	busybox-static xz-utils "libclang-$LLVM_VERSION-dev" "clang-$LLVM_VERSION"
	"lld-$LLVM_VERSION" "llvm-$LLVM_VERSION" tmux redis-server python3
	ngircd inspircd nats-server irssi weechat-headless weechat-plugins ii sic)

missing_pkgs() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
	done
}

apt_updated=0
apt_update_once() {
	if [ "$apt_updated" = 0 ]; then
		log "apt-get update"
		apt-get update -qq
		apt_updated=1
	fi
}

install_host_packages() {
	local missing
	missing=$(missing_pkgs "${HOST_PKGS[@]}")
	if [ -n "$missing" ]; then
		need_root_for_apt $missing
		apt_update_once
		log "installing: $missing"
		# redis-server is only run by the benchmark, inside the guest: keep the
		# host from starting a daemon of its own.
		DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends $missing >/dev/null
	fi
	# QEMU 10 from bookworm-backports, to match the machine's qemu-utils; the
	# backports suite only supplies what is asked for with -t.
	if ! command -v qemu-system-x86_64 >/dev/null; then
		need_root_for_apt qemu-system-x86
		local list=/etc/apt/sources.list.d/bookworm-backports.sources
		if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
			log "adding bookworm-backports to apt sources"
			cat >"$list" <<-EOF
				Types: deb
				URIs: http://deb.debian.org/debian
				Suites: bookworm-backports
				Components: main
				Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
			EOF
			apt_updated=0
		fi
		apt_update_once
		log "installing qemu-system-x86 from bookworm-backports"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-t bookworm-backports qemu-system-x86 >/dev/null
	fi
}

# apt-get with its own sources, lists and cache: nothing here touches the
# machine's apt state, and nothing from these suites is ever installed.
private_apt() {
	local d=$KCHAT_CACHE/apt
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/etc/preferences.d" "$d/etc/sources.list.d"
	cat >"$d/etc/sources.list" <<-EOF
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
	EOF
	apt-get -q \
		-o Dir::Etc::SourceList="$d/etc/sources.list" \
		-o Dir::Etc::SourceParts="$d/etc/sources.list.d" \
		-o Dir::Etc::Preferences="$d/etc/preferences" \
		-o Dir::Etc::PreferencesParts="$d/etc/preferences.d" \
		-o Dir::State::Lists="$d/lists" \
		-o Dir::Cache="$d/cache" \
		-o APT::Sandbox::User=root \
		"$@"
}

fetch_deb() { # package version destination-dir
	local pkg=$1 ver=$2 dest=$3 deb
	[ -e "$dest/.unpacked" ] && return 0
	local dl=$KCHAT_CACHE/apt/debs
	mkdir -p "$dl"
	deb=$(ls "$dl/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		log "downloading $pkg=$ver (private apt configuration)"
		private_apt update >/dev/null
		(cd "$dl" && private_apt download "$pkg=$ver" >/dev/null)
		deb=$(ls "$dl/${pkg}_"*.deb | head -n1)
	fi
	log "unpacking $(basename "$deb")"
	rm -rf "$dest"
	mkdir -p "$dest"
	dpkg -x "$deb" "$dest"
	touch "$dest/.unpacked"
}

fetch_kernel_source() {
	[ -e "$SRC_DIR/.unpacked" ] && return 0
	local pkgdir=$KCHAT_CACHE/src/linux-source-pkg-$KERNEL_PKG_VERSION
	fetch_deb "linux-source-$KERNEL_SERIES" "$KERNEL_PKG_VERSION" "$pkgdir"
	log "extracting linux-source-$KERNEL_SERIES.tar.xz"
	rm -rf "$SRC_DIR" "$SRC_DIR.tmp"
	mkdir -p "$SRC_DIR.tmp"
	tar -xJf "$pkgdir/usr/src/linux-source-$KERNEL_SERIES.tar.xz" -C "$SRC_DIR.tmp" --strip-components=1
	mv "$SRC_DIR.tmp" "$SRC_DIR"
	# The tarball is only needed to extract; drop the package copy.
	rm -rf "$pkgdir"
	touch "$SRC_DIR/.unpacked"
}

fetch_rust_src() {
	fetch_deb rust-src "$RUST_SRC_PKG_VERSION" "$KCHAT_CACHE/src/rust-src-$RUST_SRC_PKG_VERSION"
	[ -d "$RUST_LIB_SRC/core" ] || die "rust-src package has no library/core at $RUST_LIB_SRC"
}

install_bindgen() {
	[ -x "$BINDGEN" ] && return 0
	log "building bindgen-cli $BINDGEN_VERSION (about a minute)"
	(cd "$KCHAT_ROOT" && cargo install -q --locked bindgen-cli --version "$BINDGEN_VERSION" \
		--root "$TOOLS_DIR/bindgen-$BINDGEN_VERSION")
}

# rust-toolchain.toml names 1.95.0; on machines where rustup has it only as
# "stable", link the name so that rustup resolves it without a download.
ensure_toolchain() {
	local home=${RUSTUP_HOME:-$HOME/.rustup} triple=x86_64-unknown-linux-gnu v sysroot
	[ -e "$home/toolchains/$RUST_VERSION-$triple" ] && return 0
	v=$(RUSTUP_TOOLCHAIN=stable rustc --version | awk '{print $2}')
	[ "$v" = "$RUST_VERSION" ] || die "rustc $RUST_VERSION is needed (kernel and module must share it); found $v"
	sysroot=$(RUSTUP_TOOLCHAIN=stable rustc --print sysroot)
	log "naming the stable toolchain $RUST_VERSION ($sysroot)"
	ln -s "$sysroot" "$home/toolchains/$RUST_VERSION-$triple"
}

main() {
	mkdir -p "$KCHAT_CACHE"
	ensure_toolchain
	install_host_packages
	fetch_kernel_source
	fetch_rust_src
	install_bindgen
}

main "$@"
