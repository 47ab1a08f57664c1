"""The flux unit of a set of images: one common unit for every band, read from FITS ``BUNIT``."""

from __future__ import annotations

from collections.abc import Sequence

import astropy.units as u
from astropy.io import fits

__all__ = ["common_unit", "parse_bunit"]

# AB zero point: lets Jy-like inputs join nanomaggies (1 nmgy = 3.631 µJy).
_AB_EQUIV = u.zero_point_flux(3631 * u.Jy)


def common_unit(units: Sequence[u.UnitBase | None]) -> tuple[u.UnitBase | None, list[float]]:
    """Pick one unit for all images and the factor that converts each to it.

    Nanomaggies win whenever every unit converts to them (maggies, nanomaggies,
    or spectral flux densities through the AB zero point); otherwise all units
    must convert to the first one (e.g. all counts). Unitless inputs may only be
    mixed with other unitless inputs, since their scale is unknown.
    """
    if all(unit is None for unit in units):
        return None, [1.0] * len(units)
    if any(unit is None for unit in units):
        named = sorted({str(unit) for unit in units if unit is not None})
        raise u.UnitConversionError(
            f"mixed units: some images have a unit ({', '.join(named)}) and others have none; "
            "give every image a unit, or none"
        )
    try:
        return u.nmgy, [float(unit.to(u.nmgy, equivalencies=_AB_EQUIV)) for unit in units]
    except u.UnitsError:
        pass
    target = units[0]
    try:
        return target, [float(unit.to(target)) for unit in units]
    except u.UnitsError:
        found = sorted({unit.to_string() for unit in units})
        raise u.UnitConversionError(
            f"images have incompatible units ({', '.join(found)}): cannot put them on one scale; "
            "calibrate them to one unit (e.g. nanomaggies) first"
        ) from None


def parse_bunit(header: fits.Header) -> u.UnitBase | None:
    """The unit named by a FITS ``BUNIT`` keyword, None when absent or unparseable."""
    bunit = header.get("BUNIT")
    if not bunit or not str(bunit).strip():
        return None
    unit = u.Unit(str(bunit).strip(), format="fits", parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        unit = u.Unit(str(bunit).strip(), parse_strict="silent")
    return None if isinstance(unit, u.UnrecognizedUnit) else unit
