"""The `minirun` program: warm up, run the command, exit without interpreter teardown.

Python's teardown (module finalisation, garbage collection) costs a few ms and does
nothing minirun needs: every file it writes is closed or flushed by the code that
writes it, and the log file is line-buffered. So the program flushes stdout and stderr
and ends with os._exit. cli.main stays a plain function (tests and the shim call it).
"""

import gc
import os
import sys

from minirun import warmup


def main() -> None:
    if warmup.command_of(sys.argv[1:]) in warmup.COMMANDS:
        # No cycle collection while create/run/exec start (~1 ms of their imports;
        # refcounting frees the rest): wait_process turns it back on for a long wait.
        gc.disable()
    warmup.start(sys.argv[1:])  # before the imports below, which it overlaps
    if warmup.asks_for_bridge(sys.argv[1:]):
        from minirun.network import helper

        helper.start_early()  # its imports overlap ours and the container's set-up
    try:
        from minirun.cli import main as cli_main

        code = cli_main()
    finally:
        warmup.reap()  # a command that failed before reaching create or exec leaves none
        _dismiss_network_helper()
    exit_now(code)


def _dismiss_network_helper() -> None:
    """The early network helper, if create never took it (it failed first)."""
    helper = sys.modules.get("minirun.network.helper")
    if helper is not None:
        helper.dismiss_early()


def exit_now(code: int) -> None:
    """Flush stdout and stderr, then end the process without the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)
