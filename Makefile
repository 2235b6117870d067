# vswitch: `make demo` runs it, `make test` tests it (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build, the tests and the demo use (installed by `make deps`).
DEB_PACKAGES := build-essential pkg-config iproute2 iputils-ping dnsutils iperf3 \
	tcpdump tshark curl python3-scapy etcd-server etcd-client protobuf-compiler libprotobuf-dev procps coreutils ethtool nftables util-linux \
	dnsmasq-base docker.io busybox-static runc podman systemd groff-base prometheus

.PHONY: all deps build build-debug demo test lint bench fuzz clean-lab clean install-cni install uninstall

all: build

## deps: install missing Debian packages (idempotent: installs nothing when all are present)
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "make deps: all Debian packages present"; fi
	@rustup component add rustfmt clippy >/dev/null 2>&1 || true

## build: release binaries (vswitchd, vswitchctl, pktgen)
build: deps
	$(CARGO) build --release --locked --bins

build-debug:
	$(CARGO) build --locked --bins

CNI_BIN_DIR ?= /opt/cni/bin

## install-cni: the CNI plugin into $(DESTDIR)$(CNI_BIN_DIR) (docs/cni.md)
install-cni: build
	install -D -m 0755 target/release/vswitch-cni $(DESTDIR)$(CNI_BIN_DIR)/vswitch-cni

## install: the binaries, man pages and shell completions under $(DESTDIR)$(PREFIX),
## vswitchd.service, the CNI plugin and the sample /etc/vswitchd/vswitchd.toml (kept
## if there is one)
PREFIX ?= /usr/local
BINS := vswitchd vswitchctl pktgen
BIN_DIR = $(DESTDIR)$(PREFIX)/bin
MAN_DIR = $(DESTDIR)$(PREFIX)/share/man
BASH_DIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSH_DIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISH_DIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
# systemd reads /usr/local/lib/systemd/system (units "installed by the administrator")
# and /usr/lib/systemd/system; with another PREFIX, set UNIT_DIR to one of them.
UNIT_DIR ?= $(PREFIX)/lib/systemd/system
CONFIG := $(DESTDIR)/etc/vswitchd/vswitchd.toml
# Each binary's man page and its section.
MAN_PAGES := vswitchd:8 vswitchctl:1 pktgen:1

install: build install-cni
	install -d $(BIN_DIR) $(BASH_DIR) $(ZSH_DIR) $(FISH_DIR) $(MAN_DIR)/man1 $(MAN_DIR)/man8
	install -m 0755 $(addprefix target/release/,$(BINS)) $(BIN_DIR)/
	@set -e; for b in $(BINS); do \
		target/release/$$b --generate bash > $(BASH_DIR)/$$b; \
		target/release/$$b --generate zsh > $(ZSH_DIR)/_$$b; \
		target/release/$$b --generate fish > $(FISH_DIR)/$$b.fish; \
		chmod 0644 $(BASH_DIR)/$$b $(ZSH_DIR)/_$$b $(FISH_DIR)/$$b.fish; \
	done; \
	for p in $(MAN_PAGES); do b=$${p%%:*}; s=$${p##*:}; \
		target/release/$$b --generate man > $(MAN_DIR)/man$$s/$$b.$$s; \
		chmod 0644 $(MAN_DIR)/man$$s/$$b.$$s; \
	done
	install -d $(DESTDIR)$(UNIT_DIR)
	sed 's|@PREFIX@|$(PREFIX)|g' dist/vswitchd.service > $(DESTDIR)$(UNIT_DIR)/vswitchd.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/vswitchd.service
	@if [ -e $(CONFIG) ]; then echo "make install: $(CONFIG) exists, kept as it is"; \
	else install -D -m 0644 dist/vswitchd.toml $(CONFIG); fi

## uninstall: remove what install put; the configuration only when it is still the sample
uninstall:
	rm -f $(addprefix $(BIN_DIR)/,$(BINS)) $(DESTDIR)$(CNI_BIN_DIR)/vswitch-cni
	rm -f $(addprefix $(BASH_DIR)/,$(BINS)) $(addprefix $(ZSH_DIR)/_,$(BINS)) \
		$(addsuffix .fish,$(addprefix $(FISH_DIR)/,$(BINS)))
	rm -f $(foreach p,$(MAN_PAGES),$(MAN_DIR)/man$(lastword $(subst :, ,$(p)))/$(subst :,.,$(p)))
	rm -f $(DESTDIR)$(UNIT_DIR)/vswitchd.service
	@if [ -e $(CONFIG) ] && ! cmp -s dist/vswitchd.toml $(CONFIG); then \
		echo "make uninstall: $(CONFIG) differs from the sample, kept"; \
	else rm -f $(CONFIG); rmdir $(DESTDIR)/etc/vswitchd 2>/dev/null || true; fi

## demo: start a daemon, build the frontend/backend example, show who reaches whom, clean up
demo: build
	@scripts/demo.sh target/release

## test: format and lint checks, unit tests, then end-to-end scenarios (as root)
test: deps lint build-debug build
	$(CARGO) test --locked --workspace -- --test-threads=2
	@$(MAKE) --no-print-directory clean-lab

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## bench: pktgen-driven benchmarks against the Linux bridge and OVS (not run by CI)
BENCH_PACKAGES := openvswitch-switch dnsperf netsniff-ng dpdk-dev librte-net-af-xdp23
bench: build
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@scripts/bench.py target/release

## fuzz: run every cargo-fuzz target for FUZZ_SECONDS each (needs `cargo install cargo-fuzz`)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := switch:frames switch:dns_frames switch:vtep_frames switch:port_guard mgmt:control_request mgmt:line_framing mgmt:store_keys nat:conntrack dns:query vxlan:decap wire:ndp
fuzz:
	@for t in $(FUZZ_TARGETS); do crate=$${t%%:*}; target=$${t##*:}; \
		echo "fuzz $$crate/$$target for $(FUZZ_SECONDS)s"; \
		(cd $$crate && RUSTC_BOOTSTRAP=1 cargo fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

## clean-lab: remove namespaces and links that tests or the demo left behind
clean-lab:
	@scripts/clean-lab.sh

clean: clean-lab
	$(CARGO) clean
