"""Fixtures of the conformance suite, organised by the OCI runtime spec's documents.

One test per MUST of the spec that applies on Linux: ``test_runtime.py`` (runtime.md:
state, lifecycle, operations and their errors), ``test_config.py`` (config.md),
``test_config_linux.py`` (config-linux.md) and ``test_hooks.py`` (the hooks of
config.md and runtime.md's lifecycle). Each test is named after its clause and quotes
it in its docstring; the quotes come from runtime-spec v1.2 unless they say otherwise
(minirun reports 1.0.2-dev, runc 1.1.5's version; where a clause changed, the test
says which wording it checks).

Effects are observed from the host at ``create`` time where the spec says they must
be in place by then (engines and conformance tools inspect the container's pid and
namespaces between ``create`` and ``start``), otherwise from inside the container.
A MUST this machine cannot check is a ``pytest.skip`` with the reason, never left
out silently.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conf_util import stop_and_reap
from conftest import Result, parse_mountinfo, reap_zombie_children

SLEEP = ["sleep", "1000"]
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
STATUSES = ("creating", "created", "running", "stopped")


@dataclass
class Created:
    id: str
    pid: int
    bundle: Path
    result: Result

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    def mountinfo(self):
        """The init's mount table (paths as the container sees them)."""
        return parse_mountinfo(Path(f"/proc/{self.pid}/mountinfo").read_text())

    def mount_at(self, path: str):
        """The top mount at path in the container (the last one listed there)."""
        found = [m for m in self.mountinfo() if m.mountpoint == path]
        assert found, f"nothing mounted at {path} in the container"
        return found[-1]

    def root(self) -> Path:
        """The container's root directory, seen from the host."""
        return Path(f"/proc/{self.pid}/root")


@pytest.fixture
def created(runtime, bundle, cid, ctx):
    """``created(config_edits=None, args=SLEEP, base=None, extra=())`` -> Created: a
    container after a successful ``create`` (asserted); after the test its processes
    are killed and reaped (see conf_util.stop_and_reap)."""

    def make(config_edits=None, args=SLEEP, base=None, extra=(), **kw) -> Created:
        c = cid()
        b = bundle(args, config_edits, base=base)
        r = runtime.create(c, b, *extra, **kw)
        assert r.returncode == 0, r
        ctx.cleanups.append(lambda: stop_and_reap(runtime, c, reap_zombie_children))
        st = runtime.state(c)
        assert st["status"] == "created", st
        return Created(c, st["pid"], b, r)

    return make


@pytest.fixture
def create_fails(runtime, bundle, cid):
    """``create_fails(config_edits=None, args=SLEEP)`` -> Result: asserts that create
    generated an error and created nothing (no state, nothing under --root, no
    process of the bundle)."""

    def go(config_edits=None, args=SLEEP, base=None, extra=(), bundle_dir=None) -> Result:
        c = cid()
        b = bundle_dir or bundle(args, config_edits, base=base)
        r = runtime.create(c, b, *extra)
        assert r.returncode != 0, f"create must generate an error:\n{r}"
        assert r.stderr.strip(), r
        assert_not_created(runtime, c, b)
        return r

    return go


def assert_not_created(runtime, c: str, b: Path | None = None) -> None:
    assert runtime("state", c).returncode != 0, f"container {c} exists after a failed create"
    if runtime.root.is_dir():
        assert c not in os.listdir(runtime.root), os.listdir(runtime.root)
    if b is not None:
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            for link in ("cwd", "root"):
                try:
                    target = os.readlink(f"/proc/{pid}/{link}")
                except OSError:
                    continue
                assert not target.startswith(str(b)), \
                    f"process {pid} still has its {link} in the bundle: {target}"


def check_state_schema(st: dict, cid: str) -> None:
    """The state's properties and their types (schema/state-schema.json)."""
    assert isinstance(st.get("ociVersion"), str) and SEMVER.match(st["ociVersion"]), st
    assert st.get("id") == cid, st
    assert st.get("status") in STATUSES, st
    if st["status"] in ("created", "running"):
        assert type(st.get("pid")) is int and st["pid"] > 0, st
    elif "pid" in st:
        assert type(st["pid"]) is int, st
    assert isinstance(st.get("bundle"), str) and os.path.isabs(st["bundle"]), st
    ann = st.get("annotations")
    if ann is not None:
        assert isinstance(ann, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in ann.items()), st


def write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=2))
