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
    logarithmic = sorted({str(unit) for unit in units if isinstance(unit, u.FunctionUnitBase)})
    if logarithmic:
        raise u.UnitConversionError(
            f"images in logarithmic units ({', '.join(logarithmic)}) cannot be scaled linearly: give pixel "
            "fluxes (e.g. nanomaggies), not magnitudes"
        )
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


#: Spellings of image units in the wild that astropy does not parse (compared in lower case).
_BUNIT_ALIASES = {"nanomaggies": u.nmgy, "maggies": u.mgy, "maggy": u.mgy, "counts": u.ct, "adus": u.adu}


def parse_bunit(header: fits.Header, source: object = "the image") -> u.UnitBase | None:
    """The unit named by a FITS ``BUNIT`` keyword, None when absent.

    Read as FITS, then as astropy's generic format, then as a common spelling
    (``nanomaggies``, ``NMGY``, ``counts``, ``ADU`` ...).

    Raises
    ------
    ValueError
        For a ``BUNIT`` that names no known unit (``source`` names the file in
        the message): a guess could put images on scales 10**9 apart.
    """
    bunit = str(header.get("BUNIT") or "").strip()
    if not bunit:
        return None
    for fmt in ("fits", "generic"):
        unit = u.Unit(bunit, format=fmt, parse_strict="silent")
        if not isinstance(unit, u.UnrecognizedUnit):
            return unit
    alias = _BUNIT_ALIASES.get(bunit.lower()) or u.Unit(bunit.lower(), parse_strict="silent")
    if isinstance(alias, u.UnrecognizedUnit):
        raise ValueError(f"{source}: BUNIT {bunit!r} is not a unit astropy knows; fix the header (e.g. "
                         "'nanomaggy') or remove BUNIT to load the image without a unit")
    return alias
