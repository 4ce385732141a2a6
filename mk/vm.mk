# The VM lane and the teaching-lab VM check (included by the Makefile: `include mk/vm.mk`).
#
#   make test-vm        boot a pure cgroup v2 kernel under qemu (TCG, virtme-ng) on the host's
#                       filesystem; inside: a smoke test of the core, then pytest on VM_TESTS
#                       (files that do not exist are skipped); the guest's real exit status
#                       is make's, and boot + tests are timed. Then a second boot in which the
#                       guest builds a hybrid layout of its own (v1 hierarchies, memory
#                       included, cgroup2 at /sys/fs/cgroup/unified) for VM_HYBRID_TESTS, and
#                       a third with every controller in v1 and no cgroup2 for VM_V1_TESTS
#   make bench-vm       in the same VM: the smallest memory.max under which `run /bin/true`
#                       succeeds, for runc and for minirun (tests/vm/memmin.py)
#   make vm-prepare     only install what the lane needs (apt packages, the kernel, virtme-ng)
#   make clean-vm       remove what vm-prepare made (the apt packages stay)
#   make check-vagrant  the Vagrantfile's Ruby syntax and settings, and its provisioning
#                       script run on this host (Vagrant itself cannot run here)
#
# Knobs: VM_TESTS, VM_HYBRID_TESTS, VM_V1_TESTS (empty: no such lane), VM_PYTEST_ARGS (after `--` to pytest, e.g. VM_PYTEST_ARGS="-k smoke"),
# VM_CACHE, VM_TIMEOUT (seconds before the VM is killed), VM_CPUS, VM_MEMORY, VM_RESULTS,
# VM_BENCH_ARGS (memmin.py options), VM_KERNEL_PKG, VM_VIRTME_NG (see tests/vm/prepare.sh).
# Every target runs as root; the lane only ever touches cgroups inside the guest.

VM_PYTHON   ?= /usr/bin/python3
VM_CACHE    ?= /var/cache/minirun-vm
VM_TESTS    ?= tests/test_cgroups_v2.py tests/test_cgroups_cli_v2.py tests/vm/test_vm_smoke.py
VM_HYBRID_TESTS ?= tests/test_cgroups_v1.py tests/vm/test_vm_v1.py
VM_V1_TESTS ?= tests/vm/test_vm_v1.py
VM_PYTEST_ARGS ?=
VM_TIMEOUT  ?= 2400
VM_CPUS     ?= 2
VM_MEMORY   ?= 2G
# empty: build/vm/results, or $(VM_CACHE)/results when the checkout is hidden in the guest
VM_RESULTS  ?=
VM_BENCH_ARGS ?= --low 64K  # below the goal (256 KiB), so the figure is exact
VM_RUN = $(VM_PYTHON) -I tests/vm/run.py --cache $(VM_CACHE) --timeout $(VM_TIMEOUT) \
         --cpus $(VM_CPUS) --memory $(VM_MEMORY) $(if $(VM_RESULTS),--results $(VM_RESULTS))

.PHONY: vm-prepare test-vm bench-vm check-vagrant clean-vm

## vm-prepare: qemu, kmod, Debian's generic kernel unpacked into /lib/modules, virtme-ng in a venv
vm-prepare:
	bash tests/vm/prepare.sh $(VM_CACHE)

## test-vm: the VM lane (needs the .venv of `make install`, used read-only in the guest)
test-vm: install vm-prepare
	$(VM_RUN) test $(VM_TESTS) $(if $(strip $(VM_PYTEST_ARGS)),-- $(VM_PYTEST_ARGS))
	$(if $(strip $(VM_HYBRID_TESTS)),$(VM_RUN) --layout hybrid \
	    test $(VM_HYBRID_TESTS) $(if $(strip $(VM_PYTEST_ARGS)),-- $(VM_PYTEST_ARGS)))
	$(if $(strip $(VM_V1_TESTS)),$(VM_RUN) --layout v1 \
	    test $(VM_V1_TESTS) $(if $(strip $(VM_PYTEST_ARGS)),-- $(VM_PYTEST_ARGS)))

## bench-vm: runc's and minirun's smallest memory.max for `run /bin/true`, in the VM
bench-vm: install vm-prepare
	$(VM_RUN) bench --runtime /usr/sbin/runc --runtime $(CURDIR)/$(or $(VENV),.venv)/bin/minirun $(VM_BENCH_ARGS)

## check-vagrant: vagrant/Vagrantfile's Ruby syntax and settings (evaluated without Vagrant by
## vagrant/check.rb), then its provisioning script run for real on this host: it only runs
## `make demo` and `make install` (and installs make if missing), both idempotent
check-vagrant:
	@command -v ruby >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends ruby; }
	ruby -c vagrant/Vagrantfile
	ruby vagrant/check.rb
	bash -n vagrant/provision.sh
	bash vagrant/provision.sh $(CURDIR)

## clean-vm: remove the lane's cache, results and the kernels it unpacked into /lib/modules
clean-vm:
	rm -rf $(VM_CACHE) build/vm
	@for d in /lib/modules/*/; do \
	    if [ -f "$$d.minirun-vm" ]; then echo "rm -rf $$d"; rm -rf "$$d"; fi; \
	done
