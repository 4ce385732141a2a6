"""The labs cannot rot: every `console` block of docs/labs/*.md is run, and its output
compared with what the lab shows.

In a block, a line starting with `$ ` is a command (run with `sh -c`, in the checkout,
as root); the lines after it are its expected output (stdout and stderr together). A
line `...` matches any number of lines; `...` inside a line matches any text. The labs
put their bundles under /tmp/lab: here that is a directory of the test's own, `minirun`
is the runtime under test with the test's own --root, and each lab runs in a throw-away
network namespace (the bridge and NAT rules of lab 6 die with it).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import MINIRUN_BIN, TIMEOUT

REPO = Path(__file__).resolve().parents[1]
LABS = sorted((REPO / "docs" / "labs").glob("[0-9]*.md"))
pytestmark = pytest.mark.minirun_only


def blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """The console blocks of a lab: [(command, expected lines), ...] each."""
    out = []
    for body in re.findall(r"```console\n(.*?)```", text, re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        out.append(steps)
    return out


def _line_re(line: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(p) for p in line.split("...")) + r"\Z")


def matches(want: list[str], got: list[str]) -> bool:
    """Match expected lines (with `...` wildcards) against actual lines."""
    if not want:
        return not got
    head, rest = want[0], want[1:]
    if head == "...":
        return any(matches(rest, got[i:]) for i in range(len(got) + 1))
    return bool(got) and bool(_line_re(head).match(got[0])) and matches(rest, got[1:])


def test_lab_parser_and_matcher():
    lab = "```console\n$ echo a\na\n$ true\n```\n"
    assert blocks(lab) == [[("echo a", ["a"]), ("true", [])]]
    assert matches(["x...", "...", "end"], ["xyz", "1", "2", "end"])
    assert not matches(["a"], ["a", "b"])
    assert matches(["[...]"], ["[1, 2]"])


@pytest.fixture
def lab_env(ctx, tmp_path, runtime):
    """A PATH whose `minirun` is the runtime under test with this test's --root, a
    /tmp/lab of the test's own, and a network namespace held by a sleeping process."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "minirun"
    wrapper.write_text(f'#!/bin/sh\nexec {MINIRUN_BIN} --root {runtime.root} "$@"\n')
    wrapper.chmod(0o755)
    labdir = tmp_path / "lab"
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c",
                               "ip link set lo up; exec sleep 1000"])
    ctx.cleanups.append(lambda: (holder.kill(), holder.wait()))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    return env, labdir, holder.pid


@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_lab(lab: Path, lab_env, runtime, ctx):
    env, labdir, holder = lab_env
    ctx.ids += ["lab5", "lab5b", "lab6"]  # the fixed ids some labs use: deleted after
    text = lab.read_text().replace("/tmp/lab", str(labdir))
    assert blocks(text), f"{lab.name} has no console block"
    out_file = labdir.parent / "lab-output"
    for block in blocks(text):
        for cmd, want in block:
            # Output to a file, not a pipe: a detached container keeps its stdio open.
            with open(out_file, "w") as out:
                rc = subprocess.run(["nsenter", f"--net=/proc/{holder}/ns/net", "sh", "-c", cmd],
                                    cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=TIMEOUT).returncode
            printed = out_file.read_text(errors="replace")
            assert matches(want, printed.splitlines()), (
                f"{lab.name}: `{cmd}` (exit {rc}) printed:\n{printed}\nthe lab shows:\n"
                + "\n".join(want))
