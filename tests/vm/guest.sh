#!/bin/bash
# The VM lane's guest side: runs inside the VM that tests/vm/run.py boots.
#
#   [VM_LAYOUT=v2|hybrid] guest.sh RESULTS REPO test [FILE...] [-- PYTEST_OPTION...]
#   guest.sh RESULTS REPO bench [MEMMIN_OPTION...]
#
# RESULTS is the --rwdir shared with the host: everything is written there, because
# vng's own exit status is always 255 and --exec output does not reliably reach the
# host. guest.log is the whole output; timings has "STEP SECONDS" lines; status
# (written last, atomically) the lane's exit status. REPO is the checkout, read-only
# here: its .venv (made by `make install` on the host) is used as it is.
#
# `test`: the cgroup layout (VM_LAYOUT, below), the environment (the layout, the venv and
# the launcher), a smoke test of
# the core (a busybox container: exit status, pid 1, hostname), then pytest on the
# FILEs that exist (missing ones are reported and skipped). `bench`: tests/vm/memmin.py.
#
# The guest's root is the host's filesystem read-only; /run, /tmp, /var/tmp are
# writable (tmpfs or overlays in RAM): state roots, bundles and Python's bytecode
# cache go under /run/minirun-vm.
set -u

results=$1 repo=$2 mode=$3
shift 3
exec >"$results/guest.log" 2>&1 </dev/null
rm -f "$results/status" "$results/timings"

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run/minirun-vm/home
export PYTHONPYCACHEPREFIX=/run/minirun-vm/pycache
export MINIRUN_ROOTFS_CACHE=/run/minirun-vm/rootfs-cache
unset PYTHONDONTWRITEBYTECODE
mkdir -p "$HOME" "$PYTHONPYCACHEPREFIX" "$MINIRUN_ROOTFS_CACHE"
# Generous: code here runs 50-100x slower than on the host.
PYTEST_TIMEOUT=${VM_PYTEST_TIMEOUT:-1800}
export MINIRUN_TEST_TIMEOUT=${MINIRUN_TEST_TIMEOUT:-300}

VPY=$repo/.venv/bin/python3
MINIRUN=$repo/.venv/bin/minirun
lane_start=$(date +%s%N)
read -r up_start _ </proc/uptime

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
timing() { echo "$1 $2" >>"$results/timings"; }
finish() {
    local rc=$1
    read -r up_end _ </proc/uptime
    timing kernel-up-before-lane "$up_start"
    timing lane "$(secs "$lane_start" "$(now)")"
    echo "== guest: lane exit status $rc (kernel up ${up_start}s before the lane, ${up_end}s at its end)"
    sync
    echo "$rc" >"$results/status.tmp" && mv "$results/status.tmp" "$results/status"
    sync
    exit "$rc"
}

# ---- the cgroup layout -------------------------------------------------------------
# VM_LAYOUT=v2 (the kernel's own: cgroup2 alone at /sys/fs/cgroup), hybrid: the
# layout of Ubuntu 20.04, Debian 10, RHEL 8 hosts (and of the development machines),
# built here by moving the controllers to v1 hierarchies on a tmpfs, cgroup2 left at
# /sys/fs/cgroup/unified with what v1 did not take; or v1: every controller in v1 and
# no cgroup2 mounted at all (RHEL 7, Ubuntu 18.04). Nothing in the guest has enabled
# a controller in a cgroup2 subtree yet, so each one may still move to v1.
layout=${VM_LAYOUT:-v2}
# hugetlb stays in cgroup2, as on the development machines
V1_HIERARCHIES="cpu,cpuacct cpuset memory pids blkio devices freezer net_cls,net_prio"
make_hybrid() {
    umount /sys/fs/cgroup || return 1
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup || return 1
    local h
    for h in $V1_HIERARCHIES; do
        mkdir "/sys/fs/cgroup/$h" && mount -t cgroup -o "$h" cgroup "/sys/fs/cgroup/$h" \
            || { echo "mount -t cgroup -o $h failed"; return 1; }
        case $h in *,*) for part in ${h//,/ }; do ln -s "$h" "/sys/fs/cgroup/$part"; done ;; esac
    done
    mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
    [ "${1:-}" = v1-only ] && return 0
    mkdir /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
}

# ---- the environment ---------------------------------------------------------------
step_start=$(now)
echo "== guest: kernel $(uname -r), $(nproc) cpus, up ${up_start}s, cgroup layout $layout"
env_ok=1
case $layout in
    v2) ;;
    hybrid) make_hybrid || { echo "FAIL: could not build the hybrid cgroup layout"; env_ok=0; } ;;
    v1) V1_HIERARCHIES="$V1_HIERARCHIES hugetlb"
        make_hybrid v1-only || { echo "FAIL: could not build the v1 cgroup layout"; env_ok=0; } ;;
    *) echo "FAIL: unknown VM_LAYOUT '$layout' (v2, hybrid or v1)"; finish 2 ;;
esac
fstype=$(stat -fc %T /sys/fs/cgroup)
v1=$(awk '$3 == "cgroup" { print $2 }' /proc/mounts | tr '\n' ' ')
if [ "$layout" = v2 ]; then
    echo "/sys/fs/cgroup: $fstype; cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>&1);" \
         "root subtree_control: '$(cat /sys/fs/cgroup/cgroup.subtree_control 2>&1)'; self: $(cat /proc/self/cgroup)"
    if [ "$fstype" != cgroup2fs ] || [ -n "$v1" ]; then
        echo "FAIL: not a pure cgroup v2 guest (v1 mounts: ${v1:-none})"
        env_ok=0
    fi
else
    echo "/sys/fs/cgroup: $fstype; v1 hierarchies: $v1; unified: $(cat /sys/fs/cgroup/unified/cgroup.controllers 2>&1)"
    echo "self: $(tr '\n' ' ' </proc/self/cgroup)"
    if [ "$fstype" != tmpfs ] || [ -z "$v1" ]; then
        echo "FAIL: not a $layout guest (no v1 hierarchies on a tmpfs)"
        env_ok=0
    fi
    v2=$(awk '$3 == "cgroup2" { print $2 }' /proc/mounts)
    if [ "$layout" = hybrid ] && [ "$v2" != /sys/fs/cgroup/unified ]; then
        echo "FAIL: not a hybrid guest (cgroup2 at '${v2:-nowhere}')"
        env_ok=0
    elif [ "$layout" = v1 ] && [ -n "$v2" ]; then
        echo "FAIL: not a pure v1 guest (cgroup2 at $v2)"
        env_ok=0
    fi
fi
if [ ! -x "$VPY" ] || [ ! -x "$MINIRUN" ]; then
    echo "FAIL: $repo/.venv is missing or incomplete: run 'make install' on the host first"
    env_ok=0
else
    shebang=$(head -n 1 "$MINIRUN")
    if [ "$shebang" != "#!$VPY -IS" ]; then
        echo "FAIL: $MINIRUN starts with '$shebang', not '#!$VPY -IS' (re-run make install)"
        env_ok=0
    fi
    t0=$(now)
    if ver=$("$VPY" -IS -c 'import sys; print(sys.version.split()[0])'); then
        echo "venv interpreter: $VPY -IS: Python $ver ($(secs "$t0" "$(now)") s)"
    else
        echo "FAIL: $VPY -IS does not start"
        env_ok=0
    fi
    t0=$(now)
    if ver=$("$MINIRUN" --version); then
        echo "launcher: $MINIRUN --version: $(echo "$ver" | head -n 1) ($(secs "$t0" "$(now)") s)"
    else
        echo "FAIL: $MINIRUN --version failed: the installed package does not import here"
        env_ok=0
    fi
fi
timing environment "$(secs "$step_start" "$(now)")"
[ "$env_ok" = 1 ] || finish 1

# ---- bench: memmin.py ----------------------------------------------------------------
if [ "$mode" = bench ]; then
    step_start=$(now)
    echo "== guest: tests/vm/memmin.py $*"
    timeout -k 30 "$PYTEST_TIMEOUT" "$VPY" -I "$repo/tests/vm/memmin.py" \
        --json "$results/memmin.json" "$@"
    rc=$?
    [ "$rc" = 124 ] && echo "FAIL: memmin.py timed out after ${PYTEST_TIMEOUT}s"
    timing memmin "$(secs "$step_start" "$(now)")"
    finish "$rc"
fi
[ "$mode" = test ] || { echo "guest.sh: unknown mode '$mode' (test or bench)"; finish 2; }

# ---- test: the smoke test of the core --------------------------------------------------
step_start=$(now)
echo "== guest: smoke test: minirun runs a busybox container"
smoke_ok=1
root=/run/minirun-vm/state
bundle=/run/minirun-vm/smoke-bundle
id=vm-smoke-$$
rm -rf "$bundle"
if ! "$VPY" -I "$repo/tests/tools/mkbundle.py" "$bundle" --hostname vm-smoke -- \
        /bin/sh -c 'echo "pid=$$ hostname=$(hostname)"; exit 7' >/dev/null; then
    echo "FAIL: mkbundle.py could not build the bundle"
    smoke_ok=0
else
    t0=$(now)
    out=$(timeout -k 10 300 "$MINIRUN" --root "$root" run --bundle "$bundle" "$id" 2>&1)
    rc=$?
    echo "minirun run: exit $rc in $(secs "$t0" "$(now)") s; output: $out"
    if [ "$rc" != 7 ]; then
        echo "FAIL: exit status $rc, expected 7 (the container's)"
        smoke_ok=0
    fi
    if ! grep -qx 'pid=1 hostname=vm-smoke' <<<"$out"; then
        echo "FAIL: expected the line 'pid=1 hostname=vm-smoke' from the container"
        smoke_ok=0
    fi
    "$MINIRUN" --root "$root" delete --force "$id" >/dev/null 2>&1
    left=$(ls -A "$root" 2>/dev/null)
    if [ -n "$left" ]; then
        echo "FAIL: state left under $root: $left"
        smoke_ok=0
    fi
fi
[ "$smoke_ok" = 1 ] && echo "PASS: smoke test" || echo "FAIL: smoke test"
timing smoke "$(secs "$step_start" "$(now)")"

# ---- test: pytest on the selection -----------------------------------------------------
files=() opts=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; opts=("$@"); break; fi
    if [ -e "$repo/${1%%::*}" ]; then
        files+=("$1")
    else
        echo "skipping $1: no such file (yet)"
    fi
    shift
done
pytest_rc=0
if [ ${#files[@]} = 0 ]; then
    echo "== guest: no pytest file of the selection exists: pytest not run"
else
    step_start=$(now)
    echo "== guest: pytest ${files[*]} ${opts[*]}"
    cd "$repo" || finish 1
    # the venv's pytest script, as `make test` runs it: not `python -m pytest`, which would
    # put the checkout first on sys.path and import minirun from the (uncompiled) sources
    timeout -k 30 "$PYTEST_TIMEOUT" "$repo/.venv/bin/pytest" -p no:cacheprovider -v -rfEs \
        --junitxml="$results/junit.xml" "${files[@]}" "${opts[@]}"
    pytest_rc=$?
    case $pytest_rc in
        124) echo "FAIL: pytest timed out after ${PYTEST_TIMEOUT}s" ;;
        5) echo "pytest collected no test (exit 5): counted as a pass"; pytest_rc=0 ;;
    esac
    timing pytest "$(secs "$step_start" "$(now)")"
fi

if [ "$smoke_ok" != 1 ]; then finish 1; fi
finish "$pytest_rc"
