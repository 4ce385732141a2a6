#!/usr/bin/env python3
"""Drive minirun.network from outside pytest, inside a test's throw-away netns.

Until `create --network` and `delete` call the network module themselves, the tests
run this under `ip netns exec NS`, so that the runtime and the network set-up share
the namespace that holds the bridge, the nftables table and the forwarding sysctl:

    netctl.py up --minirun BIN --root R --bundle B --cid C [--flags JSON]
                 [--annotations JSON] [--out FILE]
        `create` (container output to FILE), setup, `start`; prints the record (JSON).
        If setup fails: `delete --force`, the error on stderr, exit 1.
    netctl.py setup --root R --cid C --pid PID [--flags JSON]   setup only
    netctl.py teardown --root R --cid C [--record JSON]         teardown only
    netctl.py down --minirun BIN --root R --cid C [--record JSON]
        teardown, then `delete --force`.

minirun.network is imported from this checkout (not the installed package), so the
tests exercise the working tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from minirun import network  # noqa: E402
from minirun.errors import MinirunError  # noqa: E402


def _request(args: argparse.Namespace) -> network.NetworkRequest:
    flags = {"network": "bridge", "publish": [], "subnet": None, "bridge": None, "ip": None}
    flags.update(json.loads(args.flags))
    req = network.request_from(flags, json.loads(args.annotations))
    if req is None:
        raise MinirunError("netctl: the flags ask for no network")
    return req


def _minirun(args: argparse.Namespace, *argv: str, out: str | None = None) -> None:
    """Run minirun; a created container keeps the stdout and stderr it inherits open,
    so both are files (pipes would never see EOF)."""
    with open(out or os.devnull, "ab") as sink, tempfile.TemporaryFile() as err:
        p = subprocess.run([args.minirun, "--root", args.root, *argv], stdin=subprocess.DEVNULL,
                           stdout=sink, stderr=sink if out else err, timeout=60)
        err.seek(0)
        why = err.read().decode(errors="replace").strip()
        if out and p.returncode != 0:  # the runtime's error went to the output file
            with open(out, errors="replace") as f:
                why = f.read().strip()[-2000:]
    if p.returncode != 0:
        raise MinirunError(f"minirun {' '.join(argv)}: exit {p.returncode}: {why}")


def up(args: argparse.Namespace) -> dict:
    req = _request(args)
    with tempfile.TemporaryDirectory(prefix="netctl-") as tmp:
        pid_file = os.path.join(tmp, "pid")
        _minirun(args, "create", "--bundle", args.bundle, "--pid-file", pid_file, args.cid,
                 out=args.out)
        with open(pid_file) as f:
            pid = int(f.read())
    try:
        record = network.setup(args.root, args.cid, pid, req)
    except BaseException:
        _minirun(args, "delete", "--force", args.cid)
        raise
    _minirun(args, "start", args.cid)
    return record


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["up", "setup", "teardown", "down"])
    ap.add_argument("--minirun", default=str(REPO / ".venv" / "bin" / "minirun"))
    ap.add_argument("--root", required=True)
    ap.add_argument("--cid", required=True)
    ap.add_argument("--bundle")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--flags", default="{}")
    ap.add_argument("--annotations", default="{}")
    ap.add_argument("--record", default="{}")
    ap.add_argument("--out")
    args = ap.parse_args()
    try:
        if args.command == "up":
            print(json.dumps(up(args)))
        elif args.command == "setup":
            print(json.dumps(network.setup(args.root, args.cid, args.pid, _request(args))))
        elif args.command == "teardown":
            network.teardown(args.root, args.cid, json.loads(args.record))
        else:
            network.teardown(args.root, args.cid, json.loads(args.record))
            _minirun(args, "delete", "--force", args.cid)
    except MinirunError as e:
        print(f"minirun: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
