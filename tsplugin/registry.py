"""One registry helper for every extension point of tsplugin and tsconvert (sub-commands, model
types, encoders, projectors, profiles, templates, planner presets and GPUs, eval kinds, tsconvert's
input/output formats and policies).

Every registry behaves the same way:
- `register(name, item)` refuses a name already taken (`DuplicateNameError`, a `ValueError`), so
  plugins cannot clobber each other;
- `get(name)` / `registry[name]` on an unknown name raises `UnknownNameError` whose message lists every
  valid name. It is both a `KeyError` and a `ValueError`, so callers that catch either keep working.

Standard library only: the planner, `tsplugin inspect`, `tsplugin --help` and tsconvert import it
without torch.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """Base of the errors every registry raises."""


class UnknownNameError(RegistryError, KeyError):
    """A name no registry entry has; the message lists the valid names (and how else to say it, if anything)."""

    def __init__(self, kind: str, name: object, valid: list[str], hint: str = "", where: str = "") -> None:
        self.kind, self.name, self.valid, self.hint, self.where = kind, name, list(valid), hint, where
        origin = f"{where}: " if where else ""
        extra = f" {hint}" if hint else ""
        self.message = f"{origin}unknown {kind} {name!r}; valid: {', '.join(valid)}{extra}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message

    def __reduce__(self):  # picklable (tsconvert's worker processes send errors back)
        return type(self), (self.kind, self.name, self.valid, self.hint, self.where)


class DuplicateNameError(RegistryError):
    """A second registration under a name already taken."""

    def __init__(self, kind: str, name: str, existing: object = None) -> None:
        self.kind, self.name, self.existing = kind, name, existing
        super().__init__(f"{kind} {name!r} is already registered")

    def __reduce__(self):  # without the item, which need not be picklable
        return type(self), (self.kind, self.name)


class Registry(Generic[T]):
    """Name -> item for one extension point, in registration order (the order shown in --help).

    Read like a mapping (`reg[name]`, `name in reg`, iteration, `items()`), but `get(name)` raises on
    an unknown name instead of returning None. `check(name, item)`, if given, validates each item
    before it is registered.
    """

    def __init__(self, kind: str, hint: str = "", check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self.hint = hint
        self._check = check
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add `item` under `name`; returns the item (so a module can register and keep it in one line)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} names are non-empty strings, got {name!r}")
        if name in self._items:
            raise DuplicateNameError(self.kind, name, self._items[name])
        if self._check is not None:
            self._check(name, item)
        self._items[name] = item
        return item

    def get(self, name: str, where: str = "", hint: str | None = None) -> T:
        """The item registered as `name`; an unknown name raises `UnknownNameError` listing the valid ones.

        `where` says who asked (a file, an option) and starts the message; `hint` replaces the
        registry's own hint (what else the user may give)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a config file
            raise self.unknown(name, where, hint) from None

    def unknown(self, name: object, where: str = "", hint: str | None = None) -> UnknownNameError:
        """The error for `name` (for a lookup that accepts more than the registered names)."""
        return UnknownNameError(self.kind, name, self.names(), self.hint if hint is None else hint, where)

    def names(self) -> list[str]:
        """Registered names, sorted (stable for messages and tests)."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


__all__ = ["DuplicateNameError", "Registry", "RegistryError", "UnknownNameError"]
