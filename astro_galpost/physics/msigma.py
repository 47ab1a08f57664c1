"""Black-hole masses from stellar velocity dispersions: the M–σ relation.

The black-hole mass :math:`M_\\bullet` of a galaxy is estimated from its stellar
velocity dispersion :math:`\\sigma` with a published :math:`M_\\bullet`--:math:`\\sigma`
relation of the form

.. math::

    \\log_{10}(M_\\bullet / M_\\odot) = \\alpha + \\beta \\log_{10}(\\sigma / 200\\,{\\rm km\\,s^{-1}}),

with an intrinsic (cosmic) scatter :math:`\\epsilon_0` in dex.  The relations shipped
here are listed in :data:`MBH_SIGMA_RELATIONS`.  All of them were calibrated with
:math:`\\sigma_e`, the dispersion within one effective radius, while SDSS measures
the dispersion inside a 3-arcsec fibre; :func:`aperture_correct_sigma` converts
between the two.

Conventions
-----------
* Direct calls (:func:`mbh_from_sigma`, :func:`aperture_correct_sigma`) are
  strict: plain floats are rejected because a velocity without a unit is
  ambiguous (km/s? m/s?), and non-positive, infinite or NaN values raise.
  Values that are *masked* (`~astropy.utils.masked.Masked` quantities or
  `~astropy.table.MaskedColumn`) are not checked and propagate as masked.
* Catalogue columns (:func:`add_mbh_column`) follow SDSS habits instead: a
  dispersion of 0, any negative value (e.g. the -9999 sentinel) or NaN means
  *not measured* and gives a masked black-hole mass, and a column without unit
  is taken to be in km/s, the unit every SDSS/MPA-JHU/Portsmouth table uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.constants import c as speed_of_light
from astropy.table import Column, MaskedColumn, QTable, Table
from astropy.uncertainty import Distribution
from astropy.utils.masked import Masked

from ..utils.columns import column_data

__all__ = [
    "CAPPELLARI_2006_EXPONENT",
    "JORGENSEN_1995_EXPONENT",
    "MBH_SIGMA_RELATIONS",
    "SDSS_FIBER_RADIUS",
    "SIGMA_COLUMN_CANDIDATES",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "SIGMA_RANGE_KMS",
    "SIGMA_SN_MIN",
    "MSigmaRelation",
    "add_mbh_column",
    "aperture_correct_sigma",
    "mbh_from_sigma",
    "sigma_quality",
]

#: Radius of an SDSS-I/II spectroscopic fibre (3 arcsec diameter).  BOSS fibres
#: are 2 arcsec in diameter: pass ``fiber_radius=1 * u.arcsec`` for those.
SDSS_FIBER_RADIUS = 1.5 * u.arcsec

#: Exponent :math:`\\gamma` of :math:`\\sigma(R) \\propto R^{\\gamma}` from Cappellari
#: et al. (2006, MNRAS 366, 1126, eq. 1): :math:`\\sigma_R/\\sigma_e = (R/R_e)^{-0.066}`,
#: calibrated on SAURON integral-field data directly against :math:`\\sigma_e`.
#: This is the default of :func:`aperture_correct_sigma`.
CAPPELLARI_2006_EXPONENT = -0.066

#: Exponent of Jorgensen, Franx & Kjaergaard (1995, MNRAS 276, 1341):
#: :math:`\\sigma_{\\rm ap} \\propto r_{\\rm ap}^{-0.04}`, classically used to
#: normalise fibre dispersions to an aperture of :math:`r_e/8`.
JORGENSEN_1995_EXPONENT = -0.04

#: Names of velocity-dispersion columns looked for by :func:`add_mbh_column`, in
#: order: MPA-JHU galSpecInfo ``v_disp`` (the DR7 measurement, consistent with
#: the MPA-JHU labels), SDSS SpecObj ``velDisp`` (DR8+ pipeline), SDSS/NYU-VAGC
#: ``vdisp``, generic ``sigma`` and Portsmouth ``sigmaStars``.
SIGMA_COLUMN_CANDIDATES = ("v_disp", "velDisp", "vdisp", "sigma", "sigmaStars")

#: SDSS velocity dispersions are reliable between these limits (SDSS DR7/DR8
#: documentation, "Velocity dispersions"): below ~70 km/s the SDSS instrumental
#: resolution (~60-70 km/s) dominates, above 420 km/s the template fits fail.
SIGMA_MIN = 70.0 * u.km / u.s
#: Upper end of the reliable SDSS velocity-dispersion range (see :data:`SIGMA_MIN`).
SIGMA_MAX = 420.0 * u.km / u.s
#: Median spectral S/N per pixel below which SDSS calls a dispersion unreliable.
SIGMA_SN_MIN = 10.0

#: Columns holding the median S/N of the spectrum, looked for by :func:`sigma_quality`.
_SN_COLUMNS = ("sn_median", "snMedian", "sn_median_all")


@dataclass(frozen=True)
class MSigmaRelation:
    """A power-law :math:`M_\\bullet`--:math:`\\sigma` relation.

    ``log10(M/Msun) = alpha + beta * log10(sigma / 200 km/s)`` with intrinsic
    scatter ``scatter`` (dex, Gaussian in log M at fixed sigma).
    """

    alpha: float
    beta: float
    scatter: float
    reference: str

    def log_mass(self, sigma_kms: np.ndarray) -> np.ndarray:
        """Mean log10(M/Msun) for dispersions given in km/s (plain array)."""
        return self.alpha + self.beta * np.log10(np.asarray(sigma_kms, dtype=float) / 200.0)


#: Published :math:`M_\bullet`--:math:`\sigma` relations (all-galaxy fits, pivot
#: 200 km/s, :math:`\sigma_e` within one effective radius), selectable by name:
#:
#: ``"mcconnell_ma_2013"`` (default)
#:     McConnell & Ma (2013, ApJ 764, 184), 72 galaxies: alpha = 8.32,
#:     beta = 5.64, scatter 0.38 dex.
#: ``"kormendy_ho_2013"``
#:     Kormendy & Ho (2013, ARA&A 51, 511, eq. 7; classical bulges and
#:     ellipticals): alpha = 9 - 0.510 = 8.49, beta = 4.377, scatter 0.29 dex.
#: ``"gultekin_2009"``
#:     Gültekin et al. (2009, ApJ 698, 198), all galaxies: alpha = 8.12,
#:     beta = 4.24, scatter 0.44 dex.
#: ``"van_den_bosch_2016"``
#:     van den Bosch (2016, ApJ 831, 134), 230 black holes: alpha = 8.32,
#:     beta = 5.35, scatter 0.49 dex.
MBH_SIGMA_RELATIONS: Mapping[str, MSigmaRelation] = {
    "mcconnell_ma_2013": MSigmaRelation(8.32, 5.64, 0.38, "McConnell & Ma 2013, ApJ 764, 184"),
    "kormendy_ho_2013": MSigmaRelation(8.49, 4.377, 0.29, "Kormendy & Ho 2013, ARA&A 51, 511"),
    "gultekin_2009": MSigmaRelation(8.12, 4.24, 0.44, "Gultekin et al. 2009, ApJ 698, 198"),
    "van_den_bosch_2016": MSigmaRelation(8.32, 5.35, 0.49, "van den Bosch 2016, ApJ 831, 134"),
}

_LOG_MSUN = u.dex(u.Msun)


def _get_relation(relation: str | MSigmaRelation) -> MSigmaRelation:
    if isinstance(relation, MSigmaRelation):
        return relation
    if not isinstance(relation, str) or relation.lower() not in MBH_SIGMA_RELATIONS:
        known = ", ".join(repr(k) for k in MBH_SIGMA_RELATIONS)
        raise ValueError(f"unknown M-sigma relation {relation!r}; choose one of {known} "
                         "or pass an MSigmaRelation")
    return MBH_SIGMA_RELATIONS[relation.lower()]


def _split_quantity(value: Any, name: str, unit: u.UnitBase, kind: str,
                    example: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (values in ``unit`` as float array, mask or None) from a quantity-like.

    Accepts Quantity, Masked Quantity, and table columns that carry a unit.
    Plain numbers/arrays raise TypeError; other units raise UnitTypeError.
    """
    mask = None
    if isinstance(value, Column):  # Column and MaskedColumn (ndarray subclasses)
        if value.unit is None:
            raise TypeError(f"{name} is a table column without a unit: a {kind} needs one; "
                            f"set e.g. column.unit = {example!r}")
        if isinstance(value, MaskedColumn):
            mask = np.array(np.ma.getmaskarray(value), dtype=bool)
            value = u.Quantity(value.filled(np.nan), value.unit, dtype=float)
        else:
            value = u.Quantity(value.data, value.unit, dtype=float)
    elif isinstance(value, Masked):
        if not isinstance(value, u.Quantity):
            raise TypeError(f"{name} is a masked array without a unit: a {kind} needs one, "
                            f"e.g. {name} * u.Unit({example!r})")
        mask = np.array(value.mask, dtype=bool)
        value = value.filled(np.nan * value.unit)
    elif np.ma.isMaskedArray(value):
        raise TypeError(f"{name} is a numpy masked array without a unit: a {kind} needs one; "
                        f"use astropy.utils.masked.Masked(values * u.Unit({example!r}), mask=...)")
    if not isinstance(value, u.Quantity):
        raise TypeError(f"{name} must be an astropy Quantity with {kind} units, got "
                        f"{type(value).__name__}: a plain number is ambiguous, pass e.g. "
                        f"{name} * u.Unit({example!r})")
    try:
        arr = np.array(value.to_value(unit), dtype=float)
    except u.UnitConversionError:
        have = (f"unit {value.unit.to_string()!r}" if value.unit != u.dimensionless_unscaled
                else "a dimensionless unit")
        raise u.UnitTypeError(f"{name} has {have}, which is not a {kind} (expected something "
                              f"convertible to {unit.to_string()!r})") from None
    return arr, mask


def _check_positive_finite(values: np.ndarray, mask: np.ndarray | None, name: str) -> None:
    check = values if mask is None else values[~np.broadcast_to(mask, values.shape)]
    bad_nan = ~np.isfinite(check)
    if bad_nan.any():
        raise ValueError(f"{name} contains {int(bad_nan.sum())} NaN or infinite value(s); "
                         "mask them (astropy.utils.masked.Masked) to propagate them as missing")
    bad = check <= 0
    if bad.any():
        raise ValueError(f"{name} must be strictly positive; got {int(bad.sum())} value(s) <= 0 "
                         f"(first: {check[bad].flat[0]:g}). Catalogue sentinels such as 0 or -9999 "
                         "are handled by add_mbh_column, or mask them yourself")


#: Velocity dispersions accepted by `mbh_from_sigma`, in km/s: from 1 m/s to the speed of light.
SIGMA_RANGE_KMS = (1e-3, float(speed_of_light.to_value(u.km / u.s)))


def _check_dispersion(values: np.ndarray, mask: np.ndarray | None, name: str = "sigma") -> None:
    """Positive, finite, and physical: at least 1 m/s and slower than light."""
    _check_positive_finite(values, mask, name)
    check = values if mask is None else values[~np.broadcast_to(mask, values.shape)]
    low, high = SIGMA_RANGE_KMS
    bad = (check < low) | (check >= high)
    if bad.any():
        raise ValueError(
            f"{name} must lie between 1 m/s and the speed of light ({high:.0f} km/s); got {int(bad.sum())} "
            f"value(s) outside (first: {check[bad].flat[0]:g} km/s): check the unit (km/s vs m/s)")


def mbh_from_sigma(
    sigma: u.Quantity | Distribution,
    relation: str | MSigmaRelation = "mcconnell_ma_2013",
    scatter: bool = False,
    n_samples: int = 1000,
    random_state: int | np.random.Generator | None = None,
) -> u.Quantity | Distribution:
    """Black-hole mass from a stellar velocity dispersion (M-sigma relation).

    Parameters
    ----------
    sigma : `~astropy.units.Quantity`, masked Quantity, `~astropy.table.Column` or `~astropy.uncertainty.Distribution`
        Velocity dispersion(s) :math:`\\sigma_e` with velocity units (any, e.g.
        km/s or m/s).  Masked entries propagate as masked outputs.  A
        `~astropy.uncertainty.Distribution` (e.g. a measurement posterior) is
        propagated sample by sample.
    relation : str or `MSigmaRelation`, optional
        Name of a relation in :data:`MBH_SIGMA_RELATIONS` (default McConnell &
        Ma 2013: 8.32 + 5.64 log10(sigma/200 km/s), scatter 0.38 dex), or a custom
        `MSigmaRelation`.
    scatter : bool, optional
        If `True`, return a `~astropy.uncertainty.Distribution` that draws the
        relation's intrinsic scatter (Gaussian in log M) around the mean
        relation: ``n_samples`` draws per galaxy.  If ``sigma`` is itself a
        Distribution its samples are used (and ``n_samples`` is ignored).
    n_samples : int, optional
        Number of samples per galaxy when ``scatter=True``.
    random_state : int, `numpy.random.Generator` or None, optional
        Seed or generator for the scatter draws (reproducible when given).

    Returns
    -------
    log_mbh : `~astropy.units.Dex` or `~astropy.uncertainty.Distribution`
        :math:`\\log_{10}(M_\\bullet/M_\\odot)` in ``u.dex(u.Msun)``, same shape as
        ``sigma``.  Masked inputs give a masked Dex quantity (with
        ``scatter=True`` their samples are NaN, as Distributions cannot be masked).

    Raises
    ------
    TypeError
        If ``sigma`` has no unit (plain float or array): pass km/s explicitly.
    astropy.units.UnitTypeError
        If ``sigma`` has a unit that is not a velocity.
    ValueError
        If an unmasked ``sigma`` is NaN, infinite, below 1 m/s or not slower
        than light (`SIGMA_RANGE_KMS`), if
        ``relation`` is unknown, or if ``n_samples`` is not a positive integer.

    Notes
    -----
    The relations were calibrated on :math:`\\sigma_e`; correct SDSS fibre
    dispersions with :func:`aperture_correct_sigma` first.  They are poorly
    constrained below ~70 km/s, where few dynamical black-hole masses exist.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astro_galpost.physics import mbh_from_sigma
    >>> mbh_from_sigma(200 * u.km / u.s)
    <Dex 8.32 dex(solMass)>
    >>> mbh_from_sigma([100, 300] * u.km / u.s, relation="kormendy_ho_2013").round(3)
    <Dex [7.172, 9.261] dex(solMass)>
    >>> dist = mbh_from_sigma(200 * u.km / u.s, scatter=True, n_samples=20000, random_state=1)
    >>> print(f"{dist.pdf_mean().value:.1f} +- {dist.pdf_std().value:.2f}")
    8.3 +- 0.38
    """
    rel = _get_relation(relation)

    if isinstance(sigma, Distribution):
        samples = sigma.distribution
        values, mask = _split_quantity(samples, "sigma", u.km / u.s, "velocity", "km/s")
        _check_dispersion(values, None)
        logm = rel.log_mass(values)
        if scatter:
            rng = np.random.default_rng(random_state)
            logm = logm + rng.normal(0.0, rel.scatter, size=logm.shape)
        return Distribution(u.Dex(logm, _LOG_MSUN))

    values, mask = _split_quantity(sigma, "sigma", u.km / u.s, "velocity", "km/s")
    _check_dispersion(values, mask)
    if mask is not None:
        mask = np.broadcast_to(mask, values.shape)
        values = np.where(mask, np.nan, values)
    logm = rel.log_mass(values)

    if scatter:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        rng = np.random.default_rng(random_state)
        draws = logm[..., np.newaxis] + rng.normal(0.0, rel.scatter,
                                                    size=np.shape(logm) + (int(n_samples),))
        return Distribution(u.Dex(draws, _LOG_MSUN))

    out = u.Dex(logm, _LOG_MSUN)
    if mask is not None:
        return Masked(out, mask=mask.copy())
    return out


def aperture_correct_sigma(
    sigma: u.Quantity,
    r_aperture: u.Quantity,
    r_eff: u.Quantity,
    exponent: float = CAPPELLARI_2006_EXPONENT,
) -> u.Quantity:
    """Convert a velocity dispersion measured in an aperture to one within ``r_eff``.

    Assumes the power law :math:`\\sigma(<R) \\propto R^{\\gamma}` with
    :math:`\\gamma` = ``exponent`` (negative: dispersions fall outwards), so

    .. math::

        \\sigma_e = \\sigma_{\\rm ap}\\,(r_{\\rm ap} / r_e)^{-\\gamma}.

    With the default :math:`\\gamma = -0.066` (Cappellari et al. 2006, eq. 1,
    :math:`\\sigma_R/\\sigma_e = (R/R_e)^{-0.066}`) an SDSS fibre (1.5 arcsec
    radius) that is smaller than :math:`R_e` measures a dispersion slightly
    *above* :math:`\\sigma_e`, and the correction lowers it.  Pass
    ``exponent=JORGENSEN_1995_EXPONENT`` (-0.04) for Jorgensen et al. (1995);
    to normalise to :math:`r_e/8` as in fundamental-plane work, pass
    ``r_eff / 8``.

    Parameters
    ----------
    sigma : `~astropy.units.Quantity`
        Dispersion measured in the aperture (velocity units).  Masked entries
        propagate.
    r_aperture : `~astropy.units.Quantity`
        Aperture radius (e.g. ``1.5 * u.arcsec`` for SDSS-I/II fibres).
    r_eff : `~astropy.units.Quantity`
        Effective (half-light) radius, in units compatible with ``r_aperture``
        (both angles or both lengths).  SDSS ``petroR50`` is a common proxy.
    exponent : float, optional
        Power-law slope :math:`\\gamma` (default -0.066).

    Returns
    -------
    sigma_e : `~astropy.units.Quantity`
        Dispersion within ``r_eff``, in the unit of ``sigma``.

    Raises
    ------
    TypeError
        If an argument is a plain number without a unit.
    astropy.units.UnitTypeError
        If ``sigma`` is not a velocity, or the radii are not both angles or
        both lengths.
    ValueError
        If a value is NaN, infinite or not strictly positive.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astro_galpost.physics import aperture_correct_sigma
    >>> sig = aperture_correct_sigma(200 * u.km / u.s, 1.5 * u.arcsec, 3.0 * u.arcsec)
    >>> print(f"{sig:.1f}")
    191.1 km / s
    """
    sig_vals, sig_mask = _split_quantity(sigma, "sigma", u.km / u.s, "velocity", "km/s")
    ap_unit = getattr(r_aperture, "unit", None)
    if ap_unit is not None and u.Unit(ap_unit).physical_type == "angle":
        rad_unit, kind, example = u.arcsec, "angle", "arcsec"
    else:
        rad_unit, kind, example = u.kpc, "length", "kpc"
    rap, rap_mask = _split_quantity(r_aperture, "r_aperture", rad_unit,
                                    "angle or length", example)
    try:
        reff, reff_mask = _split_quantity(r_eff, "r_eff", rad_unit, kind, example)
    except u.UnitTypeError:
        raise u.UnitTypeError(
            f"r_eff has unit {getattr(r_eff, 'unit', None)!s}, incompatible with r_aperture "
            f"({ap_unit!s}): both must be angles or both lengths") from None
    if not np.isfinite(exponent):
        raise ValueError(f"exponent must be finite, got {exponent!r}")
    _check_positive_finite(sig_vals, sig_mask, "sigma")
    _check_positive_finite(rap, rap_mask, "r_aperture")
    _check_positive_finite(reff, reff_mask, "r_eff")
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = sig_vals * (rap / reff) ** (-exponent)
    masks = [m for m in (sig_mask, rap_mask, reff_mask) if m is not None]
    out_unit = sigma.unit if isinstance(sigma, u.Quantity) else u.Unit(sigma.unit)
    out = (corrected * (u.km / u.s)).to(out_unit)
    if masks:
        mask = np.logical_or.reduce(np.broadcast_arrays(*masks)) if len(masks) > 1 else masks[0]
        mask = np.broadcast_to(mask, out.shape).copy()
        return Masked(out, mask=mask)
    return out


def _column_values(table: Table, name: str, unit: u.UnitBase,
                   default_unit: u.UnitBase) -> tuple[np.ndarray, np.ndarray]:
    """Values of a column in ``unit`` and a mask of missing entries (masked, NaN, <= 0)."""
    data, mask, col_unit = column_data(table[name])
    if col_unit is None:
        col_unit = default_unit
    try:
        values = np.array(u.Quantity(data, col_unit).to_value(unit))
    except u.UnitConversionError:
        raise u.UnitTypeError(f"column {name!r} has unit {col_unit!s}, expected something "
                              f"convertible to {unit!s}") from None
    if values.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, has shape {values.shape}")
    with np.errstate(invalid="ignore"):
        mask |= ~np.isfinite(values) | (values <= 0)
    return values, mask


def _error_column(table: Table, sigma_column: str) -> str | None:
    for candidate in (f"{sigma_column}_err", f"{sigma_column}Err", f"e_{sigma_column}"):
        if candidate in table.colnames:
            return candidate
    return None


def sigma_quality(
    table: Table,
    sigma_column: str,
    *,
    sigma_min: u.Quantity = SIGMA_MIN,
    sigma_max: u.Quantity = SIGMA_MAX,
    sn_min: float | None = SIGMA_SN_MIN,
    max_fractional_error: float | None = 0.25,
) -> np.ndarray:
    """Why each velocity dispersion is unusable for M–σ: one reason per row, ``""`` if usable.

    Reasons, the first that applies: ``"not measured"`` (masked, NaN, <= 0),
    ``"below resolution"`` (< ``sigma_min``), ``"above limit"`` (> ``sigma_max``),
    ``"low S/N"`` (the spectrum's median S/N per pixel, column ``sn_median`` or
    ``snMedian`` when present, below ``sn_min``), ``"no error"`` and
    ``"large error"`` (the error column ``<sigma>_err``/``<sigma>Err``, when
    present: masked, NaN or <= 0, or above ``max_fractional_error`` times σ)
    and ``"not early-type"`` (a DR7 SpecObj ``eClass`` column, when present,
    >= 0: SDSS DR7 measured dispersions only for spectra with eClass < 0,
    typical of early types, Connolly & Szalay 1999; DR8 and later measure
    every galaxy and give no such class).

    Parameters
    ----------
    table : `~astropy.table.Table`
        Catalogue with the dispersion (a column without unit is taken as km/s).
    sigma_column : str
        Name of the dispersion column.
    sigma_min, sigma_max : `~astropy.units.Quantity`, optional
        Reliable range; default :data:`SIGMA_MIN` to :data:`SIGMA_MAX` (70-420 km/s).
    sn_min : float or None, optional
        Lowest median S/N; `None` skips the cut.
    max_fractional_error : float or None, optional
        Largest σ error over σ; `None` skips the cut.

    Returns
    -------
    `~numpy.ndarray`
        str array of shape ``(len(table),)``.

    Raises
    ------
    astropy.units.UnitTypeError
        If the dispersion or its error is not a velocity (the message names the column).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astro_galpost.physics import sigma_quality
    >>> t = Table({"velDisp": [200.0, 0.0, 40.0, 850.0, 150.0, 200.0],
    ...            "velDispErr": [10.0, 0, 5, 90, 80, -9999]})
    >>> sigma_quality(t, "velDisp").tolist()
    ['', 'not measured', 'below resolution', 'above limit', 'large error', 'no error']
    >>> t["eClass"] = [0.1, -0.2, -0.2, -0.2, -0.2, -0.2]  # DR7: a late-type spectrum's sigma is not used
    >>> sigma_quality(t, "velDisp").tolist()[0]
    'not early-type'
    """
    kms = u.km / u.s
    sigma, missing = _column_values(table, sigma_column, kms, kms)
    reason = np.full(len(table), "", dtype="<U16")
    checks = [(missing, "not measured"),
              (sigma < u.Quantity(sigma_min, kms).value, "below resolution"),
              (sigma > u.Quantity(sigma_max, kms).value, "above limit")]
    sn_column = next((c for c in _SN_COLUMNS if c in table.colnames), None)
    if sn_min is not None and sn_column is not None:
        sn, sn_missing = _column_values(table, sn_column, u.one, u.one)
        checks.append((sn_missing | (sn < sn_min), "low S/N"))
    err_column = _error_column(table, sigma_column)
    if max_fractional_error is not None and err_column is not None:
        err, err_missing = _column_values(table, err_column, kms, kms)
        checks.append((err_missing, "no error"))
        checks.append((err > max_fractional_error * sigma, "large error"))
    if "eClass" in table.colnames:
        eclass, eclass_missing = _column_values(table, "eClass", u.one, u.one)
        checks.append((eclass_missing | (eclass >= 0), "not early-type"))
    for bad, why in checks:
        with np.errstate(invalid="ignore"):
            reason[(reason == "") & np.asarray(bad, dtype=bool)] = why
    return reason


def _sigma_column(table: Table, sigma_column: str | None) -> str:
    """The dispersion column: ``sigma_column`` if in ``table``, else the first of `SIGMA_COLUMN_CANDIDATES` present."""
    if sigma_column is None:
        for candidate in SIGMA_COLUMN_CANDIDATES:
            if candidate in table.colnames:
                return candidate
        raise KeyError(f"no velocity-dispersion column found; looked for "
                       f"{', '.join(SIGMA_COLUMN_CANDIDATES)} (pass sigma_column=...). "
                       f"Columns present: {', '.join(table.colnames[:20])}"
                       f"{' ...' if len(table.colnames) > 20 else ''}")
    if sigma_column not in table.colnames:
        raise KeyError(f"column {sigma_column!r} not in table")
    return sigma_column


def _dispersions(table: Table, sigma_column: str, quality: bool,
                 need_error: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(sigma, sigma_err, mask, reason)`` in km/s: the mask of unusable rows and why each is unusable.

    ``sigma_err`` is 0 without an error column and NaN where the error column's
    entry is missing (masked, NaN, <= 0); with ``need_error`` such rows are
    unusable too (reason ``"no error"``).
    """
    kms = u.km / u.s
    sigma, mask = _column_values(table, sigma_column, kms, kms)
    reason = sigma_quality(table, sigma_column) if quality else np.where(mask, "not measured", "")
    sigma_err = np.zeros(len(table))
    err_column = _error_column(table, sigma_column)
    if err_column is not None:
        sigma_err, err_missing = _column_values(table, err_column, kms, kms)
        sigma_err = np.where(err_missing, np.nan, sigma_err)
        if need_error:
            reason = np.where((reason == "") & err_missing, "no error", reason)
    mask |= reason != ""
    return sigma, sigma_err, mask, reason


def _aperture_corrected(table: Table, sigma: np.ndarray, mask: np.ndarray, reff_column: str,
                        fiber_radius: u.Quantity, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma, mask)``: fibre dispersions corrected to the size column's radius, rows without a size masked."""
    if reff_column not in table.colnames:
        raise KeyError(f"size column {reff_column!r} not in table")
    if not isinstance(fiber_radius, u.Quantity):
        raise TypeError("fiber_radius must be a Quantity, e.g. 1.5 * u.arcsec")
    kms = u.km / u.s
    reff, reff_mask = _column_values(table, reff_column, fiber_radius.unit, u.arcsec)
    mask |= reff_mask
    good = ~mask
    corrected = np.full_like(sigma, np.nan)
    if good.any():
        corrected[good] = aperture_correct_sigma(
            sigma[good] * kms, fiber_radius, reff[good] * fiber_radius.unit,
            exponent=exponent).to_value(kms)
    return corrected, mask


def _log_masses(rel: MSigmaRelation, sigma: np.ndarray, sigma_err: np.ndarray, mask: np.ndarray,
                propagate_scatter: bool, random_state: int | np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """``(log_mbh, spread)``, NaN where masked (the spread also where ``sigma_err`` is NaN, unknown).

    With ``propagate_scatter`` each mass is drawn from its spread.
    """
    logm = np.full(len(sigma), np.nan)
    logm[~mask] = rel.log_mass(sigma[~mask])
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.hypot(rel.scatter, rel.beta * sigma_err / (sigma * np.log(10.0)))
    spread = np.where(mask, np.nan, spread)
    if propagate_scatter:
        rng = np.random.default_rng(random_state)
        logm[~mask] += rng.normal(0.0, spread[~mask])
    return logm, spread


def _store_mbh_columns(table: Table, name: str, scatter_column: str | None, logm: np.ndarray,
                       spread: np.ndarray, mask: np.ndarray, rel: MSigmaRelation, sigma_column: str) -> None:
    """Write the masked mass (and scatter) columns: Dex quantities in a QTable, MaskedColumns in a Table."""
    spread_mask = mask | np.isnan(spread)
    if isinstance(table, QTable):
        table[name] = Masked(u.Dex(logm, _LOG_MSUN), mask=mask)
        if scatter_column is not None:
            table[scatter_column] = Masked(spread * u.dex, mask=spread_mask)
    else:
        table[name] = MaskedColumn(logm, mask=mask, unit=_LOG_MSUN,
                                   description=f"log10 black-hole mass from {sigma_column} "
                                               f"({rel.reference})")
        if scatter_column is not None:
            table[scatter_column] = MaskedColumn(
                spread, mask=spread_mask, unit=u.dex,
                description="M-sigma intrinsic scatter and propagated sigma error, in quadrature")


# Long for its numpydoc docstring (a public entry point with many parameters); the code is under 100 lines.
def add_mbh_column(
    table: Table,
    sigma_column: str | None = None,
    name: str = "log_mbh",
    relation: str | MSigmaRelation = "mcconnell_ma_2013",
    reff_column: str | None = None,
    fiber_radius: u.Quantity = SDSS_FIBER_RADIUS,
    exponent: float = CAPPELLARI_2006_EXPONENT,
    scatter_column: str | None = None,
    overwrite: bool = False,
    quality: bool = True,
    propagate_scatter: bool = False,
    random_state: int | np.random.Generator | None = None,
) -> Table:
    """Add a black-hole mass column to a catalogue from its velocity dispersion.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        Catalogue; modified in place and returned.
    sigma_column : str, optional
        Name of the dispersion column.  If `None`, the first of
        :data:`SIGMA_COLUMN_CANDIDATES` present is used (``velDisp``, ``vdisp``,
        ``sigma``, ``sigmaStars``).  A column without unit is taken as km/s.
        Entries that are masked, NaN, 0 or negative (SDSS uses 0 and -9999 for
        "not measured") become masked black-hole masses.
    name : str, optional
        Name of the new column (default ``"log_mbh"``), in ``dex(solMass)``.
    relation : str or `MSigmaRelation`, optional
        M-sigma relation, see :func:`mbh_from_sigma`.
    reff_column : str, optional
        If given, aperture-correct the fibre dispersion to the effective radius
        with :func:`aperture_correct_sigma`, using this size column (e.g. SDSS
        ``petroR50_r``; a column without unit is taken as arcsec).  Rows whose
        size is missing (masked, NaN, <= 0) get a masked mass.
    fiber_radius : `~astropy.units.Quantity`, optional
        Aperture radius for the correction: 1.5 arcsec (SDSS-I/II); use 1 arcsec
        for BOSS.
    exponent : float, optional
        Aperture-correction slope (default Cappellari et al. 2006, -0.066).
    scatter_column : str, optional
        If given, also add a column with the relation's intrinsic scatter (dex),
        with the dispersion error propagated when there is an error column,
        masked where the mass is and where that error is missing (masked, NaN,
        <= 0: the spread is then unknown).
    overwrite : bool, optional
        Replace an existing column called ``name`` (default: raise).
    quality : bool, optional
        Mask masses whose dispersion :func:`sigma_quality` finds unreliable
        (outside 70-420 km/s, low S/N, no or a large error) and add a column
        ``<name>_reason`` saying why each masked mass is masked (``""`` where
        usable). `False` masks only unmeasured dispersions (and, with
        ``propagate_scatter``, those whose error is missing, with a warning).
    propagate_scatter : bool, optional
        Draw each label from its uncertainty instead of the relation's mean:
        ``log M + N(0, s)`` with ``s`` the relation's intrinsic scatter and the
        dispersion error propagated (``beta * err / (sigma ln 10)``) added in
        quadrature, so that a model trained on the labels learns the full
        M–σ uncertainty. ``s`` goes to ``scatter_column`` when that is given.
        Rows whose error is missing (masked, NaN, <= 0, such as SDSS's
        -9999) have no known spread and get a masked mass (reason ``"no
        error"``); without an error column only the intrinsic scatter is drawn.
    random_state : int, Generator or None, optional
        Seed of the draws of ``propagate_scatter``.

    Returns
    -------
    table : `~astropy.table.Table`
        The same table with the new column(s).  In a `~astropy.table.Table` the
        column is a `~astropy.table.MaskedColumn` with unit ``dex(solMass)``; in a
        `~astropy.table.QTable` it is a masked `~astropy.units.Dex` quantity.

    Raises
    ------
    KeyError
        If no dispersion column is found (the message lists the candidates), or
        a named column is absent.
    ValueError
        If ``name`` exists and ``overwrite`` is False, or the relation is unknown.
    astropy.units.UnitTypeError
        If the dispersion column has a non-velocity unit, or the size column's
        unit is incompatible with ``fiber_radius``.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astro_galpost.physics import add_mbh_column
    >>> t = Table({"vdisp": [200.0, 0.0, -9999.0, 100.0]})
    >>> t = add_mbh_column(t)
    >>> t["log_mbh"].round(2).tolist()
    [8.32, None, None, 6.62]
    >>> t["log_mbh"].unit
    Unit("dex(solMass)")
    """
    if not isinstance(table, Table):
        raise TypeError(f"table must be an astropy Table or QTable, got {type(table).__name__}")
    rel = _get_relation(relation)
    sigma_column = _sigma_column(table, sigma_column)
    if name in table.colnames and not overwrite:
        raise ValueError(f"column {name!r} already exists; pass overwrite=True to replace it")

    sigma, sigma_err, mask, reason = _dispersions(table, sigma_column, quality, propagate_scatter)
    if not quality and np.any(reason == "no error"):
        warnings.warn(f"add_mbh_column: {np.sum(reason == 'no error')} rows of {sigma_column!r} have no error "
                      f"(masked, NaN or <= 0 in {_error_column(table, sigma_column)!r}); their {name!r} is masked, "
                      "since propagate_scatter draws each mass from its error", UserWarning, stacklevel=2)
    if reff_column is not None:
        sigma, mask = _aperture_corrected(table, sigma, mask, reff_column, fiber_radius, exponent)
    logm, spread = _log_masses(rel, sigma, sigma_err, mask, propagate_scatter, random_state)
    _store_mbh_columns(table, name, scatter_column, logm, spread, mask, rel, sigma_column)
    if quality:
        table[f"{name}_reason"] = Column(reason, description=f"why {name} is masked ('' = usable)")
    return table
