"""Real container engines (containerd + ctr, podman + conmon) driving the runtime.

A package, so that its conftest is imported as ``engines.conftest`` and the suite's
own ``conftest`` module (which test modules import by that name) stays the one in
``tests/``.
"""
