"""json.loads/dumps on `_json`'s C scanner and encoder, without importing `json`.

Same results as the stdlib for what minirun reads and writes: a document that does not
parse is handed to the real `json`, which raises its usual JSONDecodeError (so error
messages keep their line and column); `indent` or any other option goes there too.
"""

try:
    import _json
except ImportError:  # an interpreter without the C accelerator: the real module
    _json = None

_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_WS = " \t\n\r"


class _Context:
    """What `_json.make_scanner` reads off json.JSONDecoder: its default settings."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict = {}


_scan = _json.make_scanner(_Context()) if _json is not None else None


def loads(s: str | bytes | bytearray) -> object:
    if _scan is None:
        return _real().loads(s)
    text = s
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return _real().loads(s)  # UTF-16/32 or invalid: the real module's detection
    if text.startswith("\ufeff"):
        return _real().loads(s)  # its "BOM" error
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError, ValueError):
        # Not JSON. The C scanner raises json.decoder's JSONDecodeError only once that
        # module is loaded (else a SystemError): the real module says what and where.
        return _real().loads(s)
    if text[end:].strip(_WS):
        return _real().loads(s)  # "Extra data"
    return value


def load(f) -> object:
    return loads(f.read())


def _no_default(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _encoder(item_separator: str, key_separator: str):
    return _json.make_encoder({}, _no_default, _json.encode_basestring_ascii, None,
                              key_separator, item_separator, False, False, True)


_ENCODERS = {}


def dumps(obj: object, *, separators: tuple[str, str] | None = None, **options: object) -> str:
    if _json is None or options:
        return _real().dumps(obj, separators=separators, **options)
    seps = separators or (", ", ": ")
    enc = _ENCODERS.get(seps)
    if enc is None:
        enc = _ENCODERS[seps] = _encoder(*seps)
    return "".join(enc(obj, 0))


def _real():
    import json

    return json


def __getattr__(name: str) -> object:
    """JSONDecodeError and the rest: the stdlib's own (imported on first use)."""
    return getattr(_real(), name)
