"""Samples and truths as plain float arrays: the input handling every evaluation module shares.

`unpack` splits any supported array-like (`~astropy.uncertainty.Distribution`,
Quantity, masked column or array) into values, mask and unit; `convert`
changes the unit of plain values; `prepare` brings posterior samples and
truths to float arrays in the truth's unit and says which rows are usable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy import units as u
from astropy.uncertainty import Distribution

from ..utils.columns import column_data

__all__ = ["convert", "prepare", "samples_array", "unpack"]


def unpack(x: Any) -> tuple[np.ndarray, np.ndarray, u.UnitBase | None]:
    """Split an array-like into ``(float values, mask, unit)``.

    Parameters
    ----------
    x : array-like
        A `~astropy.uncertainty.Distribution` (sample axis last),
        `~astropy.units.Quantity` (incl. logarithmic ones),
        `astropy.utils.masked.Masked`, `numpy.ma.MaskedArray`,
        `~astropy.table.MaskedColumn`, `~astropy.table.Column` (whose
        ``.unit`` is used) or plain array.

    Returns
    -------
    data : `~numpy.ndarray`
        float values, NaN where masked.
    mask : `~numpy.ndarray`
        bool, True where masked.
    unit : `~astropy.units.UnitBase` or None
        The unit, None when there is none.
    """
    if isinstance(x, Distribution):
        x = x.distribution
    data, mask, unit = column_data(x)
    if mask.any():
        data = np.where(mask, np.nan, data)
    return data, mask, unit


def convert(data: np.ndarray, from_unit, to_unit) -> np.ndarray:
    """Convert plain ``data`` between (possibly logarithmic) units.

    A missing unit on either side means "already in the other one's unit".
    """
    if from_unit is None or to_unit is None or from_unit == to_unit:
        return data
    return np.asarray(from_unit.to(to_unit, data), dtype=float)


def samples_array(samples: Any, unit=None) -> tuple[np.ndarray, u.UnitBase | None]:
    """Samples as a float array (sample axis last for Distributions), masked samples NaN.

    Parameters
    ----------
    samples : array-like
        See `unpack`.
    unit : `~astropy.units.UnitBase`, optional
        Convert the values to this unit.

    Returns
    -------
    data : `~numpy.ndarray`
    unit : `~astropy.units.UnitBase` or None
        The unit of ``data``.
    """
    data, _, s_unit = unpack(samples)
    data = convert(data, s_unit, unit)
    return data, (unit if unit is not None else s_unit)


def prepare(
    samples: Any, truth: Any, *, allow_points: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, u.UnitBase | None]:
    """Bring samples and truth to float arrays in the truth's unit.

    Parameters
    ----------
    samples : array-like
        ``(N,)`` Distribution or ``(N, S)`` samples; with ``allow_points`` also
        ``(N,)`` point estimates.
    truth : array-like
        ``(N,)`` true values.
    allow_points : bool, optional
        Accept one-dimensional, non-Distribution ``samples`` as point estimates.

    Returns
    -------
    samp : `~numpy.ndarray`
        ``(N, S)`` samples, or ``(N,)`` point estimates.
    tru : `~numpy.ndarray`
        ``(N,)`` truth values (NaN where masked).
    valid : `~numpy.ndarray`
        bool ``(N,)``, rows usable for a metric (truth unmasked and finite,
        samples finite).
    unit : unit or None
        The unit the values are expressed in.
    """
    tru, t_mask, t_unit = unpack(truth)
    if tru.ndim != 1:
        raise ValueError(f"truth must be one-dimensional (N,), got shape {tru.shape}")
    samp, unit = samples_array(samples, t_unit)
    if samp.ndim == 1:
        if not allow_points or isinstance(samples, Distribution):
            raise ValueError("samples must be a Distribution of shape (N,) or an array of shape (N, S)")
    elif samp.ndim != 2:
        raise ValueError(f"samples must have shape (N, S) (or be a (N,) Distribution), got {samp.shape}")
    if samp.shape[0] != tru.shape[0]:
        raise ValueError(f"samples describe {samp.shape[0]} objects but truth has {tru.shape[0]}")
    valid = ~t_mask & np.isfinite(tru)
    valid &= np.all(np.isfinite(samp), axis=1) if samp.ndim == 2 else np.isfinite(samp)
    return samp, tru, valid, unit
