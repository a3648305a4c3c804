#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build what a mode needs, then boot it: `vm.sh MODE FLAVOUR`.
#
#   test   the test suite in one boot of the debug kernel (make test)
#   run    an interactive guest with kchat loaded, ports 10106 and 6667 forwarded (make run)
#   bench  the benchmark on the production-like kernel (make bench)
#   stress the hostile-client suite on the KASAN kernel (make stress)
#   clippy the module linted with CLIPPY=1 W=e against the flavour's tree
set -euo pipefail
. "$(dirname "$0")/common.sh"

mode=${1:?mode}
flavour=${2:?flavour}

bash "$KCHAT_ROOT/tests/scripts/setup.sh"
kdir=$(bash "$KCHAT_ROOT/tests/scripts/kernel.sh" "$flavour")
read -r -a margs <<<"$(kmake_args "$flavour" | tr '\n' ' ')"

# The module is built out of the source tree, one output directory per kernel,
# so the debug and bench builds never mix objects.
mo=$KCHAT_ROOT/target/kmod/$flavour
mkdir -p "$mo"
build_module() {
	log "building kchat.ko against the $flavour kernel"
	make -s -C "$kdir" M="$KCHAT_ROOT" MO="$mo" "${margs[@]}" W=1 "$@" modules
}

if [ "$mode" = clippy ]; then
	build_module CLIPPY=1 W=e
	exit 0
fi
build_module

log "building the user-space workspace (release)"
(cd "$KCHAT_ROOT" && cargo build -q --release --workspace)

extra=()
if [ "$mode" = test ]; then
	# Host-side tests (tools, harness, the client in a terminal) join the summary.
	mkdir -p "$KCHAT_ROOT/target/vm"
	log "running cargo test on the host"
	(cd "$KCHAT_ROOT" && cargo test --release --workspace --no-fail-fast 2>&1) >"$KCHAT_ROOT/target/vm/host-tests.log" || true
	extra=(--host-test-log "$KCHAT_ROOT/target/vm/host-tests.log")
fi

if [ "$mode" = stress ]; then
	# KASAN under TCG is slow: give the full suite time (it took more than 90 minutes on
	# 3 December 2026, the storm cases paced by the accept path).
	extra=(--timeout 9000)
fi

harness=$KCHAT_ROOT/target/release/kchat-vm
exec "$harness" "$mode" "${extra[@]}" \
	--kernel "$kdir/arch/x86/boot/bzImage" \
	--module "$mo/kchat.ko" \
	--bin-dir "$KCHAT_ROOT/target/release" \
	--out "$KCHAT_ROOT/target/vm/$mode"
