"""Plain numbers out of the many kinds of table columns astropy users hold."""

from __future__ import annotations

import astropy.units as u
import numpy as np

__all__ = ["column_data"]


def column_data(col) -> tuple[np.ndarray, np.ndarray, u.UnitBase | None]:
    """Split a Column, MaskedColumn, Quantity, Masked Quantity or array into parts.

    Returns
    -------
    data : `~numpy.ndarray`
        The values as float64 (masked entries keep their raw value).
    mask : `~numpy.ndarray`
        bool, True where masked.
    unit : `~astropy.units.UnitBase` or None
        The column's unit, None when it has none.
    """
    mask = getattr(col, "mask", None)
    raw = getattr(col, "unmasked", None)  # astropy.utils.masked.Masked
    if raw is None:
        raw = np.ma.getdata(col)
    unit = getattr(col, "unit", None)
    raw = getattr(raw, "value", raw)
    try:
        data = np.array(raw, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError("column is not numeric") from err
    if mask is None or mask is np.ma.nomask:
        mask = np.zeros(data.shape, bool)
    else:
        mask = np.array(np.broadcast_to(mask, data.shape), dtype=bool)
    return data, mask, (u.Unit(unit) if unit is not None else None)
