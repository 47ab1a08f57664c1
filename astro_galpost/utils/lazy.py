"""Lazy public names for a package (PEP 562): a name's module is imported on first use.

This keeps ``import astro_galpost`` and ``import astro_galpost.physics`` free of torch, which
takes seconds to import.

Example
-------
>>> from astro_galpost.utils.lazy import lazy_exports
>>> __getattr__, __dir__ = lazy_exports("astro_galpost.model", {".flows": ("FLOWS",)})
>>> __getattr__("FLOWS").kind
'flow'
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, Iterable[str]]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import each public name's module on first use.

    Parameters
    ----------
    package : str
        Dotted name of the package whose ``__init__`` calls this.
    modules : mapping of str to iterable of str
        Module (relative to ``package``, e.g. ``".estimator"``) to the public names it defines.

    Returns
    -------
    getattr, dir : callable
        To be bound as the package's module-level ``__getattr__`` and ``__dir__``.
    """
    module_of = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module_of[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__
