#!/usr/bin/env python3
"""Write fast start-up launchers for the `minirun` command and the containerd shim
(`containerd-shim-minirun-v1`, run by containerd for every container start).

pip's generated console script runs the venv's interpreter with `site` enabled
(site-packages scan, .pth files) and honours PYTHON* variables; Python's
start-up dominates a container's start time. This writes instead:

    #!/abs/path/.venv/bin/python3 -IS
    import sys; sys.path.insert(0, "/abs/path/.venv/lib/python3.11/site-packages")
    from minirun.entry import main; sys.exit(main())

-I ignores PYTHON* environment variables and the user site directory, -S skips
`site` (no .pth processing, no site-packages scan); the venv's site-packages is
put on sys.path by hand, computed here at install time.

Usage: install_launcher.py [--venv DIR] [--link PATH]...
  --venv DIR   the virtual environment (default: .venv next to the repo root)
  --link PATH  also make PATH a symlink to the launcher (e.g. /usr/local/bin/minirun)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """\
#!{python} -IS
# Fast launcher written by tests/tools/install_launcher.py (make install).
import sys; {inserts}
from {module} import {func}; sys.exit({func}())
"""



def site_dirs(python: Path) -> list[str]:
    """The venv's purelib and platlib directories, as that interpreter sees them."""
    out = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import sysconfig; p = sysconfig.get_paths(); print(p['purelib']); print(p['platlib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    dirs: list[str] = []
    for d in out:
        if d and d not in dirs:
            dirs.append(d)
    return dirs


def write_atomic(path: Path, text: str, mode: int = 0o755) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".minirun-launcher-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def install(venv: Path, links: list[Path]) -> Path:
    venv = venv.absolute()
    python = venv / "bin" / "python3"
    if not python.exists():
        raise FileNotFoundError(f"{python} does not exist: make the venv first (make venv)")
    dirs = site_dirs(python)
    # Later inserts at position 0 end up first: insert in reverse to keep purelib first.
    inserts = "; ".join(f"sys.path.insert(0, {d!r})" for d in reversed(dirs))
    shebang = f"#!{python} -IS"
    if len(shebang) >= 256:
        raise ValueError(f"shebang too long for the kernel ({len(shebang)} bytes): {shebang}")
    launcher = venv / "bin" / "minirun"
    write_atomic(launcher, TEMPLATE.format(python=python, inserts=inserts,
                                           module="minirun.entry", func="main"))
    # containerd runs the shim for every container start: the same fast start-up
    write_atomic(venv / "bin" / "containerd-shim-minirun-v1",
                 TEMPLATE.format(python=python, inserts=inserts, module="minirun.shim.main",
                                 func="entry"))
    for link in links:
        link = link.absolute()
        if link.resolve() == launcher.resolve() and link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.parent / f".{link.name}.tmp{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(launcher, tmp)
        os.replace(tmp, link)
    return launcher


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Install a fast `minirun` launcher into a venv.")
    p.add_argument("--venv", type=Path, default=REPO / ".venv")
    p.add_argument(
        "--link",
        type=Path,
        action="append",
        default=[],
        help="also symlink PATH to the launcher (repeatable)",
    )
    ns = p.parse_args(argv)
    try:
        launcher = install(ns.venv, ns.link)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"install_launcher: {e}", file=sys.stderr)
        return 1
    print(f"installed {launcher}" + "".join(f"\n  linked {link}" for link in ns.link))
    return 0


if __name__ == "__main__":
    sys.exit(main())
