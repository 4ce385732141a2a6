#!/bin/bash
# Provisioning of the teaching-lab VM (vagrant/Vagrantfile): the README's set-up commands,
# run as root in the checkout, and nothing else:
#
#   make demo      installs what is missing, builds the busybox bundle, runs the demo
#   make install   minirun on root's PATH (/usr/local/bin/minirun)
#
#   provision.sh [CHECKOUT]    (default: the checkout this script belongs to)
#
# It is idempotent (every make target skips what is done) and touches nothing but what
# those targets do, so CI runs it as it is on its own host (`make check-vagrant`).
set -euo pipefail
exec </dev/null
export DEBIAN_FRONTEND=noninteractive

src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
say() { echo "provision: $*"; }

[ "$(id -u)" = 0 ] || { echo "provision: run as root" >&2; exit 1; }
[ -f "$src/Makefile" ] || { echo "provision: $src/Makefile: no such file" >&2; exit 1; }
# make is the one dependency the Makefile cannot install (the Debian box lacks it)
if ! command -v make >/dev/null; then
    say "installing make"
    apt-get update -q
    apt-get install -y -q make
fi

cgroups=$(stat -fc %T /sys/fs/cgroup)
if [ "$cgroups" = cgroup2fs ]; then
    say "cgroups: pure v2 ($(cat /sys/fs/cgroup/cgroup.controllers))"
else
    say "cgroups: /sys/fs/cgroup is $cgroups, not pure v2 (hybrid: limits of controllers bound to v1 are refused)"
fi

cd "$src"
say "make demo (in $src)"
make demo
say "make install"
make install
say "ready: $(command -v minirun || echo /usr/local/bin/minirun) -> $(readlink -f /usr/local/bin/minirun)"
say "next (in the lab VM after vagrant ssh): cd $src && sudo make demo"
