"""Removing a cgroup subtree, for the engine tests' cleanup and for shimbench (which
imports it with tests/engines on sys.path, as it does image.py)."""

from __future__ import annotations

import os
from pathlib import Path


def rmdir_tree(top: Path) -> list[str]:
    """rmdir a cgroup (or any directory of empty directories) bottom-up; returns
    what could not be removed."""
    left = []
    if not top.is_dir():
        return left
    for dirpath, _, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError as e:
            left.append(f"{dirpath}: {e.strerror}")
    return left
