# SPDX-License-Identifier: GPL-2.0
# Shared settings for the kchat build and VM scripts. Sourced, not run.
#
# Everything expensive (kernel sources, toolchain pieces, built kernels) lives
# in a cache outside the clone, so a fresh clone on a warm machine reuses it.

KCHAT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KCHAT_CACHE=${KCHAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kchat}

# Pinned versions (DESIGN.md section 4).
KERNEL_SERIES=7.3
KERNEL_PKG_VERSION=7.3.4-1~bpo13+1
RUST_VERSION=1.95.0
RUST_SRC_PKG_VERSION=1.95.0+dfsg1-2~bpo13+1
BINDGEN_VERSION=0.72.1
LLVM_VERSION=19

SRC_DIR=$KCHAT_CACHE/src/linux-$KERNEL_PKG_VERSION
RUST_LIB_SRC=$KCHAT_CACHE/src/rust-src-$RUST_SRC_PKG_VERSION/usr/src/rustc-$RUST_VERSION/library
TOOLS_DIR=$KCHAT_CACHE/tools
BINDGEN=$TOOLS_DIR/bindgen-$BINDGEN_VERSION/bin/bindgen
LIBCLANG_PATH=/usr/lib/llvm-$LLVM_VERSION/lib
export LIBCLANG_PATH

log() { printf '[kchat] %s\n' "$*" >&2; }
die() { printf '[kchat] error: %s\n' "$*" >&2; exit 1; }

# The toolchain named in rust-toolchain.toml; rustup resolves it from the clone.
rustc_path() { (cd "$KCHAT_ROOT" && rustup which rustc); }

# Hash of the config fragments that make up one kernel flavour, so that a
# changed fragment builds a new kernel beside the old one.
flavour_fragments() {
	case "$1" in
	debug) echo base.config debug.config ;;
	kasan) echo base.config debug.config kasan.config ;;
	bench) echo base.config bench.config ;;
	*) die "unknown kernel flavour '$1' (debug, kasan or bench)" ;;
	esac
}

flavour_dir() {
	local flavour=$1 f h
	h=$(
		cd "$KCHAT_ROOT/tests/config" || exit 1
		for f in $(flavour_fragments "$flavour"); do cat "$f"; done
		echo "$KERNEL_PKG_VERSION $RUST_VERSION $BINDGEN_VERSION $flavour"
	) || die "cannot read config fragments"
	h=$(printf '%s' "$h" | sha256sum | cut -c1-12)
	echo "$KCHAT_CACHE/build/$flavour-$KERNEL_PKG_VERSION-$h"
}

# Make arguments shared by every kernel and module build.
kmake_args() {
	local flavour=$1
	echo "RUSTC=$(rustc_path) BINDGEN=$BINDGEN RUST_LIB_SRC=$RUST_LIB_SRC"
	if [ "$flavour" = kasan ]; then
		echo "LLVM=-$LLVM_VERSION"
	fi
}
