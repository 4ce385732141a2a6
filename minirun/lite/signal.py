"""`signal` without its enums: the functions and constants of `_signal`.

signal.signal() here returns plain ints for the previous handler, as the C module does;
`Signals` and anything else comes from the real module, imported on first use.
"""



from _signal import *  # noqa: F403 - the C module's names, as `signal` re-exports them
from _signal import signal as signal  # noqa: F401 - explicit for readers and linters


def __getattr__(name: str) -> object:
    import signal as real

    return getattr(real, name)
