"""minirun's log: --log FILE, --log-format text|json, --debug.

Errors always reach stderr as one plain line (`minirun: ...`). When --log names a
file, every record also goes there in the chosen format; runc's JSON lines are
`{"level": ..., "msg": ..., "time": RFC 3339}`, and engines show the last error line.
"""

import os
import sys
import time

from minirun.lite import json


class Log:
    def __init__(self) -> None:
        self.debug_enabled = False
        self.format = "text"
        self.path: str | None = None
        self._file = None

    def configure(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.format = fmt
        self.debug_enabled = debug

    def _out(self):
        if self._file is None and self.path:
            try:
                self._file = open(self.path, "a", buffering=1)  # noqa: SIM115
            except OSError as e:
                self.path = None
                self.error(f"cannot open log file: {e}")
        return self._file

    def _record(self, level: str, msg: str) -> None:
        f = self._out()
        # runc's forms: logrus JSON (compact, as Go's encoder writes it) or text
        if self.format == "json":
            line = json.dumps({"level": level, "msg": msg, "time": _now()},
                              separators=(",", ":"))
        else:
            line = f'time="{_now()}" level={level} msg={json.dumps(msg)}'
        if f is not None:
            f.write(line + "\n")
        elif self.format == "json":
            sys.stderr.write(line + "\n")
            return
        if level == "debug":
            if self.debug_enabled:  # logrus text, as runc --debug: tools grep level=debug
                sys.stderr.write(f'time="{_now()}" level=debug msg={json.dumps(msg)}\n')
        elif f is None or level == "error":
            prefix = "minirun: " if level == "error" else f"minirun: {level}: "
            sys.stderr.write(prefix + msg + "\n")

    def error(self, msg: str) -> None:
        self._record("error", msg)

    def warn(self, msg: str) -> None:
        self._record("warning", msg)

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._record("debug", msg)


def _now() -> str:
    """RFC 3339 in seconds, as runc's logrus lines."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


log = Log()


def pid_tag() -> str:
    return f"[{os.getpid()}]"
