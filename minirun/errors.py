"""The errors minirun reports: each renders as one line saying what, where and why."""

import os


class MinirunError(Exception):
    """A failure to report to the user as one line (no traceback unless --debug)."""

    exit_code = 1


class ConfigError(MinirunError):
    """config.json is missing, malformed, or asks for something minirun cannot do."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path}: {why}" if path else why)


class SyscallError(MinirunError):
    """A kernel call failed: names the call, the errno and the path it was about."""

    def __init__(self, call: str, err: int, path: str | bytes | None = None,
                 hint: str | None = None) -> None:
        self.call = call
        self.errno = err
        self.path = os.fsdecode(path) if path is not None else None
        name = _ERRNO_NAMES.get(err, str(err))
        where = f" {self.path}" if self.path else ""
        why = f": {hint}" if hint else ""
        super().__init__(f"{call}{where}: {os.strerror(err)} ({name}){why}")


def errno_name(err: int) -> str:
    return _ERRNO_NAMES.get(err, str(err))


def _errno_names() -> dict[int, str]:
    import errno

    return dict(errno.errorcode)


_ERRNO_NAMES = _errno_names()
