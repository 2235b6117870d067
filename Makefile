# vswitch: `make demo` runs it, `make test` tests it (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build, the tests and the demo use (installed by `make deps`).
DEB_PACKAGES := build-essential pkg-config iproute2 iputils-ping dnsutils iperf3 \
	tcpdump tshark curl python3-scapy etcd-server etcd-client protobuf-compiler libprotobuf-dev procps coreutils ethtool nftables util-linux \
	dnsmasq-base docker.io busybox-static runc podman

.PHONY: all deps build build-debug demo test lint bench fuzz clean-lab clean install-cni

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

## demo: start a daemon, build the frontend/backend example, show who reaches whom, clean up
demo: build
	@scripts/demo.sh target/release

## test: format and lint checks, unit tests, then end-to-end scenarios (as root)
test: deps lint build-debug
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
