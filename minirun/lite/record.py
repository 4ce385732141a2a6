"""collections.namedtuple's features that minirun uses, without importing `collections`
(1.5 ms a run): a tuple subclass with named fields, defaults, repr and _replace."""

_MISSING = object()


def record(name: str, fields: str, defaults: tuple = ()) -> type:
    """A tuple type like namedtuple(name, fields, defaults=defaults)."""
    names = tuple(fields.split())
    first_default = len(names) - len(defaults)

    def __new__(cls, *args, **kwargs):  # noqa: N807 - the tuple's constructor
        if len(args) > len(names):
            raise TypeError(f"{name}() takes {len(names)} arguments, {len(args)} given")
        values = [*args, *[_MISSING] * (len(names) - len(args))]
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            i = names.index(key)
            if values[i] is not _MISSING:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            values[i] = value
        for i, value in enumerate(values):
            if value is _MISSING:
                if i < first_default:
                    raise TypeError(f"{name}() missing required argument {names[i]!r}")
                values[i] = defaults[i - first_default]
        return tuple.__new__(cls, values)

    def __repr__(self) -> str:  # noqa: N807
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(names, self, strict=True))
        return f"{type(self).__name__}({inner})"

    def _replace(self, **changes):
        values = [changes.pop(n, v) for n, v in zip(names, self, strict=True)]
        if changes:
            raise ValueError(f"got unexpected field names: {list(changes)!r}")
        return type(self)(*values)

    body = {"__slots__": (), "__new__": __new__, "__repr__": __repr__,
            "__getnewargs__": lambda self: tuple(self), "_replace": _replace,
            "_fields": names}
    for i, field in enumerate(names):
        body[field] = property(lambda self, i=i: self[i], doc=f"{name}.{field}")
    return type(name, (tuple,), body)
