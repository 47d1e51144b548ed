"""One small registry type shared by methods, datasets and metrics.

Entries are registered with a decorator, created by name with keyword overrides, listed with fnmatch
patterns, and extended by third-party packages through an entry-point group (``fusebench.methods``,
``fusebench.datasets``, ``fusebench.metrics``). Names match exactly first, then case-insensitively when that
is unambiguous (``Mean``, ``TNO``). Unknown names fail with a "did you mean" message.

Built-in entries may live in modules that are imported on first need (``modules``), in order, until the
name asked for is found: ``create_method("mean")`` then costs no import of timm-backed networks (~2 s).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered name: the factory that builds it and read-only metadata (direction, description, ...)."""

    name: str
    factory: Callable[..., T]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        # Metadata reads like attributes: ``entry.higher_is_better``.
        meta = object.__getattribute__(self, "meta")
        if key in meta:
            return meta[key]
        raise AttributeError(f"{type(self).__name__} '{self.name}' has no attribute or metadata '{key}'")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories of one kind (method, dataset, metric)."""

    def __init__(self, kind: str, entry_point_group: str | None = None, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._modules = modules
        self._pending = list(modules)  # built-in modules not imported yet (importing one registers its entries)
        self._plugins_loaded = entry_point_group is None

    def register(
        self, name: str | None = None, *, aliases: tuple[str, ...] = (), **meta: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a factory (class or function) under ``name`` (default: its ``__name__``)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if not self._is_builtin(getattr(factory, "__module__", "")):
                self._load_builtins()  # so that a third-party name clashing with a built-in fails here
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            self._entries[key] = Entry(key, factory, MappingProxyType(dict(meta)))
            for alias in aliases:
                self._aliases[alias] = key
            return factory

        return decorator

    def _is_builtin(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self._modules)

    def _import_next(self) -> bool:
        """Import the next pending built-in module; False when none is left."""
        if not self._pending:
            return False
        importlib.import_module(self._pending.pop(0))
        return True

    def _load_builtins(self) -> None:
        while self._import_next():
            pass

    def _load_all(self) -> None:
        """Every built-in module, then the plugins (after the built-ins: a plugin cannot take a built-in name)."""
        self._load_builtins()
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                ep.load()  # importing the module runs its register() decorators
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the built-ins
                warnings.warn(f"could not load {self.kind} plugin '{ep.name}' ({ep.value}): {exc}", stacklevel=2)

    def _key(self, name: object) -> str | None:
        """The canonical name for ``name``: exact name or alias, else a unique case-insensitive match."""
        if not isinstance(name, str):
            return None
        key = self._aliases.get(name, name)
        if key in self._entries:
            return key
        folded = name.casefold()
        matches = {n for n in self._entries if n.casefold() == folded}
        matches |= {k for a, k in self._aliases.items() if a.casefold() == folded}
        return matches.pop() if len(matches) == 1 else None

    def _find(self, name: object) -> str | None:
        """:meth:`_key`, importing pending built-in modules (then plugins) until ``name`` is found."""
        key = self._key(name)
        while key is None and self._import_next():
            key = self._key(name)
        if key is None and not self._plugins_loaded:
            self._load_all()
            key = self._key(name)
        return key

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name`` (or an alias, any case); raises ``UnknownNameError`` with suggestions."""
        key = self._find(name)
        if key is not None:
            return self._entries[key]
        if not isinstance(name, str) or not name.strip():
            raise UnknownNameError(f"Expected a {self.kind} name. Got {name!r}. Available: {', '.join(self.list())}")
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"Unknown {self.kind} '{name}'.{hint} Available: {', '.join(self.list())}")

    def create(self, name: str, **overrides: Any) -> T:
        """Build ``name``; ``None`` overrides are dropped so unset CLI options never beat defaults."""
        kwargs = {k: v for k, v in overrides.items() if v is not None}
        return self.get(name).factory(**kwargs)

    def list(self, pattern: str = "*", exclude: tuple[str, ...] = ()) -> list[str]:
        """Registered names matching the fnmatch ``pattern`` and none of ``exclude``, sorted."""
        self._load_all()
        return sorted(
            n
            for n in self._entries
            if fnmatch.fnmatch(n, pattern) and not any(fnmatch.fnmatch(n, x) for x in exclude)
        )

    def __contains__(self, name: object) -> bool:
        return self._find(name) is not None

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.list())

    def __len__(self) -> int:
        self._load_all()
        return len(self._entries)
