# SPDX-License-Identifier: GPL-2.0
#
# kchat: `make` builds kchat.ko against KDIR (default: the running kernel's
# build tree, like every out-of-tree module). `make run` and `make test` do
# all the set-up themselves: packages, kernel sources, the bundled test
# kernel, the module, the user-space tools, then a QEMU guest.

KDIR ?= /lib/modules/$(shell uname -r)/build
SCRIPTS := tests/scripts

.PHONY: all modules clean setup run test bench stress fmt fmtcheck clippy tools help

all modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean 2>/dev/null || true
	rm -rf target

# Installs packages, fetches the kernel and rust-src packages, builds bindgen.
setup:
	bash $(SCRIPTS)/setup.sh

# Boots the debug test kernel with kchat loaded and its ports forwarded to
# 127.0.0.1:10106 (native) and 127.0.0.1:6667 (IRC); quit the guest with
# `poweroff` (or Ctrl-a x). `make run CLUSTER=3`: three nodes joined through
# NATS, node i's ports forwarded to 10106+10i and 6667+10i (see README).
run:
	KCHAT_CLUSTER=$(CLUSTER) bash $(SCRIPTS)/vm.sh run debug

# Builds everything the tests need, then runs the whole suite in the VM.
test:
	bash $(SCRIPTS)/vm.sh test debug

# Benchmarks on the production-like kernel (never the debug one).
bench:
	bash $(SCRIPTS)/vm.sh bench bench

# The hostile-client suite on the KASAN kernel.
stress:
	bash $(SCRIPTS)/vm.sh stress kasan

# The user-space workspace (client, load generator, reference servers).
tools:
	cargo build --release --workspace

# rustfmt has no out-of-tree kernel target, so format src/ directly.
fmt:
	rustfmt --edition 2021 src/kchat_main.rs
	cargo fmt --all

fmtcheck:
	rustfmt --edition 2021 --check src/kchat_main.rs
	cargo fmt --all -- --check

# Lints the module with the kernel's clippy configuration; warnings are errors.
clippy:
	bash $(SCRIPTS)/vm.sh clippy debug

help:
	@sed -n '3,7p' Makefile
