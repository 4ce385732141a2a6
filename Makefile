# minirun: build, install, demo, test and benchmark on a fresh Debian 12 machine, as root.
#
#   make demo     install everything and run a container that shows its isolation
#   make test     install everything, lint, the VM lane (pure cgroup v2), the Vagrantfile
#                 check, then the whole pytest suite (engines included)
#   make install  venv + fast launcher in .venv/bin/minirun + /usr/local/bin/minirun
#   make bench    install, then compare minirun with runc (BENCH_ARGS="--runs 50"): run, exec,
#                 100 lifecycles, --network bridge, the shim, (in the VM) the smallest
#                 memory.max; ends with one table of the figures and their goals
#   make fuzz     config.json fuzzing at length (FUZZ_EXAMPLES=20000, FUZZ_RUNS=500)
#   make soak     1,000 lifecycles in a row: nothing left, the runtime's RSS and fds flat
#   make lint     ruff
#   make clean    remove .venv, build artefacts and demo/
#
# Every target is idempotent: it skips what is already present.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := install
.DELETE_ON_ERROR:

# Debian's interpreter: it starts faster than pyenv's or any shim on PATH.
PYTHON   ?= /usr/bin/python3
VENV     := .venv
VPY      := $(VENV)/bin/python3
STAMP    := $(VENV)/.minirun-installed
PREFIX   ?= /usr/local
DEV_TOOLS ?= pytest ruff hypothesis grpcio
BENCH_ARGS ?=
# The command `make demo` runs (e.g. MINIRUN=/usr/sbin/runc to compare).
MINIRUN  ?= $(PREFIX)/bin/minirun

APT_PACKAGES := busybox-static runc gcc make python3-dev python3-venv libcap-dev \
                libseccomp-dev iproute2 nftables uidmap containerd podman conmon jq

# What the installed package is built from: any change triggers a reinstall.
# Directories are included so that added or removed files count too.
PKG_FILES := $(wildcard pyproject.toml setup.py setup.cfg MANIFEST.in README.md LICENSE)
SOURCES := $(shell find minirun csrc -name __pycache__ -prune -o \
                \( -type d -o -type f ! -name '*.pyc' ! -name '*.so' ! -name '*.o' \) -print 2>/dev/null) \
           $(PKG_FILES)

export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1
export PIP_ROOT_USER_ACTION := ignore

.PHONY: deps venv install demo test bench fuzz soak lint clean shim-proto

## deps: the Debian packages needed to build, run and test (apt-get only if one is missing)
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	    case "$$(dpkg -s "$$p" 2>/dev/null || true)" in \
	        *"Status: install ok installed"*) ;; \
	        *) missing="$$missing $$p" ;; \
	    esac; \
	done; \
	if [ -n "$$missing" ]; then \
	    [ "$$(id -u)" = 0 ] || { echo "make deps: missing$$missing; run as root" >&2; exit 1; }; \
	    echo "installing:$$missing"; \
	    apt-get update; \
	    apt-get install -y --no-install-recommends $$missing; \
	fi

## venv: .venv with the project installed non-editable (compiled .pyc, compiled cffi module)
venv: $(STAMP)

$(VPY): | deps
	$(PYTHON) -m venv $(VENV)

# The package is built from a clean copy of its sources in a temporary directory:
# no stale build/ files or in-tree compiled modules get into the wheel, and the
# working tree is left alone. pip compiles the .pyc files at install time.
$(STAMP): $(SOURCES) Makefile | $(VPY)
	@tmp=$$(mktemp -d /tmp/minirun-build.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='*.so' --exclude='*.o' \
	    minirun csrc $(PKG_FILES) | tar -x -C "$$tmp"; \
	$(VENV)/bin/pip uninstall -q -y minirun >/dev/null 2>&1 || true; \
	echo "pip install minirun (from a copy in $$tmp) $(DEV_TOOLS)"; \
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/pip install -q --use-pep517 "$$tmp" $(DEV_TOOLS)
	touch $@

## install: venv, the fast launcher .venv/bin/minirun, and $(PREFIX)/bin/minirun -> it;
## the containerd shim next to it (containerd finds containerd-shim-minirun-v1 on PATH)
install: venv
	$(VPY) tests/tools/install_launcher.py --venv $(CURDIR)/$(VENV) --link $(PREFIX)/bin/minirun
	ln -sfn $(CURDIR)/$(VENV)/bin/containerd-shim-minirun-v1 $(PREFIX)/bin/containerd-shim-minirun-v1

## shim-proto: regenerate minirun/shim/proto/*_pb2.py from containerd's .proto files
shim-proto:
	apt-get install -y -q --no-install-recommends golang-github-containerd-containerd-dev \
	    golang-github-containerd-cgroups-dev golang-github-gogo-protobuf-dev
	$(PYTHON) -m venv build/protogen && build/protogen/bin/pip install -q grpcio-tools
	build/protogen/bin/python minirun/shim/proto/generate.py

## demo: run a busybox container whose /demo.sh prints the isolation it sees
demo: deps install
	@if grep -q " $(CURDIR)/demo/" /proc/self/mounts; then \
	    echo "make demo: something is still mounted under demo/; unmount it first" >&2; exit 1; \
	fi
	rm -rf demo/bundle
	$(VPY) tests/tools/mkbundle.py demo/bundle --hostname minirun-demo -- /bin/sh /demo.sh >/dev/null
	install -m 0755 tests/tools/demo.sh demo/bundle/rootfs/demo.sh
	@root=$$(mktemp -d /tmp/minirun-demo-root.XXXXXX); id=demo-$$$$; rc=0; \
	echo "+ $(MINIRUN) --root $$root run --bundle demo/bundle $$id"; \
	$(MINIRUN) --root "$$root" run --bundle demo/bundle "$$id" || rc=$$?; \
	$(MINIRUN) --root "$$root" delete --force "$$id" >/dev/null 2>&1 || true; \
	rm -rf "$$root"; \
	exit $$rc

## test: lint, then the pytest suite (as root)
test: install
	$(VENV)/bin/ruff check minirun tests
	$(MAKE) check-vagrant
	$(MAKE) test-vm VM_TIMEOUT=1200
	$(VENV)/bin/pytest -v tests

## bench: minirun vs runc (run, exec, lifecycles, network, shim, memory floor), then one
## table of issue 11's figures and goals (tests/tools/bench_table.py)
BENCH_OUT ?= build/bench
bench: install
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	$(VPY) tests/tools/bench.py --minirun $(CURDIR)/$(VENV)/bin/minirun \
	    --json-out $(BENCH_OUT)/bench.json $(BENCH_ARGS)
	$(VPY) tests/tools/netbench.py --minirun $(CURDIR)/$(VENV)/bin/minirun --runs 20 \
	    --json-out $(BENCH_OUT)/netbench.json
	$(VPY) tests/tools/shimbench.py --shim $(CURDIR)/$(VENV)/bin/containerd-shim-minirun-v1 \
	    --json-out $(BENCH_OUT)/shimbench.json
	$(MAKE) bench-vm
	$(VPY) tests/tools/bench_table.py $(BENCH_OUT) \
	    "$$(ls -t build/vm/results/memmin.json $(VM_CACHE)/results/memmin.json 2>/dev/null | head -1)"

## fuzz: the config fuzzing of the suite, at length
FUZZ_EXAMPLES ?= 20000
FUZZ_RUNS ?= 500
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RUNS=$(FUZZ_RUNS) $(VENV)/bin/pytest -q tests/security/test_fuzz_config.py

## soak: 1,000 lifecycles (SOAK_RUNS=N), the runtime's peak RSS and fd count must stay flat
SOAK_RUNS ?= 1000
soak: install
	$(VPY) tests/tools/soak.py --minirun $(CURDIR)/$(VENV)/bin/minirun --runs $(SOAK_RUNS)

lint: venv
	$(VENV)/bin/ruff check minirun tests

clean:
	@if grep -q " $(CURDIR)/demo/" /proc/self/mounts; then \
	    echo "make clean: something is still mounted under demo/; unmount it first" >&2; exit 1; \
	fi
	@# Remove $(PREFIX)/bin/minirun only if it is our symlink into this checkout's venv.
	@if [ -L $(PREFIX)/bin/minirun ] && \
	    [ "$$(readlink $(PREFIX)/bin/minirun)" = "$(CURDIR)/$(VENV)/bin/minirun" ]; then \
	    rm -f $(PREFIX)/bin/minirun; \
	fi
	rm -rf $(VENV) build *.egg-info demo

include mk/vm.mk
