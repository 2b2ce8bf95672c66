"""`Record`: the small value classes of the secrets hot path, without `dataclasses`.

`kagiya secrets decrypt` runs dozens of times a day and in every pre-commit hook; importing `dataclasses` (which
pulls in `inspect`) and letting it generate code for each class at import cost several milliseconds of a start-up
measured in tens. These classes declare `__slots__` and an explicit `__init__`; equality and repr come from here.
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()  # type: ignore[attr-defined,unused-ignore]

    __hash__ = None  # type: ignore[assignment]  # mutable, like a non-frozen dataclass

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({args})"
