"""A small name → object registry that third-party packages extend through entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownEntryError"]

T = TypeVar("T")


class UnknownEntryError(KeyError):
    """A name that no built-in entry or installed plugin of a registry has.

    Parameters
    ----------
    kind, name : str
        The registry's kind ("flow") and the name asked for.
    known : str
        The names it has, comma-separated.
    """

    def __init__(self, kind: str, name: str, known: str) -> None:
        super().__init__(kind, name)
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:
        return f"unknown {self.kind} {self.name!r}; registered: {self.known}"


class Registry(Generic[T]):
    """Named objects of one kind (targets, encoders, flows).

    Built-in entries are added with :meth:`register`; entries published by other
    packages under the entry-point ``group`` are loaded the first time the
    registry is read, so installing a plugin is enough to make it available.

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages ("target", "encoder").
    group : str
        Entry-point group scanned for plugins, e.g. ``"astro_galpost.targets"``.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(item: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (mainly for tests of plugins)."""
        self._items.pop(name, None)

    def load_plugins(self, reload: bool = False) -> None:
        """Import every entry point of :attr:`group` and register what it names.

        An entry point may name an object (registered under the entry point's
        name) or a zero-argument callable returning one, marked by being a
        function whose name starts with ``register``: it is called so that it
        can register several entries itself.
        """
        if self._plugins_loaded and not reload:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._items and not reload:
                continue
            obj = ep.load()
            if callable(obj) and getattr(obj, "__name__", "").startswith("register"):
                obj()
            else:
                self._items[ep.name] = obj

    def get(self, name: str) -> T:
        """Return the entry called ``name``; a `KeyError` lists what exists."""
        self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownEntryError(self.kind, name, known) from None

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self.load_plugins()
        return iter(list(self._items))

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._items)

    def names(self) -> list[str]:
        """Registered names, built-ins first."""
        return list(self)

    def __repr__(self) -> str:
        return f"<Registry of {self.kind}s: {', '.join(self)}>"


