"""Light stand-ins for the few stdlib modules the create/run/exec path uses.

Python's `json` imports `re` (and with it `enum`, `functools`, `collections`), and
`socket` and `signal` build `enum` classes for their constants: together about half of
the imports of a `run`. Their C cores (`_json`, `_socket`, `_signal`) do the actual
work and import nothing. Each module here offers the subset minirun calls, with the
same names and results, and hands anything else (an error's exception class, an enum)
to the real module, imported then: the slow path is the rare one.

    from minirun.lite import json, signal, socket
"""
