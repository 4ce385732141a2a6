"""Container ids: the one validator every command runs before touching --root.

runc's rule: letters, digits and `_ + - .` only (so an id is one path component that is
never `.` or `..`); at most 255 bytes, a file name's limit. String methods, not `re`:
this runs on every command, `run` and `exec` included.
"""

from minirun.errors import MinirunError

ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
MAX_LEN = 255


def check_id(cid: str) -> None:
    if not cid or cid in (".", "..") or not ALLOWED.issuperset(cid):
        raise MinirunError(f"invalid container id {cid!r}: use letters, digits and _ + - . "
                           "only")
    if len(cid) > MAX_LEN:
        raise MinirunError(f"invalid container id {cid[:20]}...: longer than {MAX_LEN} "
                           "characters")
