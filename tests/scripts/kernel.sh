#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build one guest kernel flavour (debug, kasan or bench) in the
# cache, keyed by kernel version and a hash of its config fragments; print the
# build directory (the KDIR modules are built against). A finished build is
# reused as it is.
set -euo pipefail
. "$(dirname "$0")/common.sh"

flavour=${1:-debug}
out=$(flavour_dir "$flavour")

if [ -e "$out/.kchat-built" ]; then
	echo "$out"
	exit 0
fi

[ -e "$SRC_DIR/.unpacked" ] || die "kernel source missing: run tests/scripts/setup.sh"
read -r -a margs <<<"$(kmake_args "$flavour" | tr '\n' ' ')"
kmake() { make -s -C "$SRC_DIR" O="$out" "${margs[@]}" "$@"; }

# Builds of this flavour with other fragments are stale: drop them (each is ~1 GB).
for old in "$(dirname "$out")/$flavour-"*; do
	[ "$old" != "$out" ] && [ -d "$old" ] && { log "removing stale build $old"; rm -rf "$old"; }
done

log "configuring $flavour kernel in $out"
mkdir -p "$out"
kmake tinyconfig >/dev/null
frags=()
for f in $(flavour_fragments "$flavour"); do frags+=("$KCHAT_ROOT/tests/config/$f"); done
(cd "$out" && "$SRC_DIR/scripts/kconfig/merge_config.sh" -m -O "$out" .config "${frags[@]}" >/dev/null)
kmake olddefconfig >/dev/null

# Every line of every fragment must have survived olddefconfig: a dependency
# that was not met drops an option silently.
bad=0
for f in "${frags[@]}"; do
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qxF -- "$line" "$out/.config" || { log "config: '$line' from $(basename "$f") did not survive"; bad=1; }
			;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }
			sym=${sym%% *}
			grep -q "^$sym=" "$out/.config" && { log "config: $sym is set, $(basename "$f") wants it off"; bad=1; }
			;;
		esac
	done <"$f"
done
[ "$bad" = 0 ] || die "kernel config for $flavour lost options (see above)"

kmake rustavailable >/dev/null || die "the kernel build does not find a usable Rust toolchain"

log "building $flavour kernel ($(nproc) cores; about 10 minutes cold)"
start=$(date +%s)
# `modules` writes Module.symvers, without which modpost reports the kernel
# crate's symbols as undefined for out-of-tree Rust modules.
kmake -j"$(($(nproc) + 1))" bzImage modules
log "built $flavour kernel in $(($(date +%s) - start)) s"
touch "$out/.kchat-built"
echo "$out"
