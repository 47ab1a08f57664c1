"""Constructor parameters as in scikit-learn: `get_params`, `set_params`, `clone` and a plain `repr`.

`ParamsMixin` gives a class whose ``__init__`` stores each argument unchanged
under its own name the scikit-learn estimator API, without depending on
scikit-learn: `sklearn.base.clone` works on it, nested objects with their own
``get_params`` are reached with ``name__param`` keys, and the `repr` shows the
parameters that differ from their defaults (it reads attributes only: no
registry lookup, no validation, so it never fails). `check_int` and `check_float`
validate numeric parameters in ``fit``, with errors that name the parameter;
`tuples_as_defaults` gives parameters read back from JSON their tuples again.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

__all__ = ["ParamsMixin", "check_float", "check_int", "tuples_as_defaults"]


def tuples_as_defaults(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` read back from JSON, each list a tuple again where the default of the
    parameter of that name in ``cls``'s constructor is a tuple (JSON has lists only).

    Examples
    --------
    >>> class A(ParamsMixin):
    ...     def __init__(self, bands=("g", "r"), scale=1.0):
    ...         self.bands, self.scale = bands, scale
    >>> tuples_as_defaults(A, {"bands": ["g", "r", "i"], "scale": [2.0]})
    {'bands': ('g', 'r', 'i'), 'scale': [2.0]}
    """
    defaults = inspect.signature(cls.__init__).parameters
    return {k: tuple(v) if isinstance(v, list) and k in defaults and isinstance(defaults[k].default, tuple)
            else v for k, v in params.items()}


class ParamsMixin:
    """scikit-learn style parameter access for classes whose ``__init__`` stores its arguments."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """Names of the ``__init__`` arguments (no ``self``, ``*args`` or ``**kwargs``)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as in scikit-learn.

        Parameters
        ----------
        deep : bool, optional
            Also list the parameters of parameter values that have
            ``get_params`` themselves, as ``name__param``.

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", sub) for key, sub in value.get_params(deep=True).items())
        return out

    def set_params(self, **params: Any):
        """Set constructor parameters (``name`` or nested ``name__param``); return ``self``.

        Raises
        ------
        ValueError
            For a name that is not a parameter of this class (or of the nested object).
        """
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"{key!r} is not a parameter of {type(self).__name__}; "
                                 f"its parameters are: {', '.join(valid)}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            owner = getattr(self, name)
            if not hasattr(owner, "set_params"):
                raise ValueError(f"parameter {name!r} of {type(self).__name__} holds {type(owner).__name__}, "
                                 f"which has no parameters to set ({', '.join(sub_params)})")
            owner.set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        shown = []
        for name in self._param_names():
            value, default = getattr(self, name, None), defaults[name].default
            try:
                same = value is default or bool(value == default)
            except Exception:  # noqa: BLE001 - arrays and odd objects compare oddly: show them
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an int of at least ``low``; a `ValueError` naming the parameter otherwise.

    Whole floats (``3.0``) pass; booleans do not.
    """
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float = 0.0, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval from ``low`` to ``high``; a `ValueError` naming the parameter.

    The interval is closed at each end unless ``low_open`` or ``high_open``.
    """
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (math.isfinite(number) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return number
