"""Magnitudes, colours and their errors as features, for any set of bands."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..utils.columns import column_data
from .base import Encoder

__all__ = ["PhotometryEncoder", "find_error_column", "find_extinction_column", "read_magnitude_errors",
           "read_magnitudes"]

# Magnitudes outside this range are "not measured": SDSS writes -9999/9999,
# ECO and RESOLVE write 0.
_MAG_RANGE = (0.0, 40.0)
#: d(mag) / d(ln flux)
_MAG_PER_LN = 2.5 / np.log(10.0)
#: SDSS CAS photometry, uncorrected for Galactic extinction: ``<kind>Mag_<band>``, ``<kind>Flux_<band>``
_CAS_PHOTOMETRY = r"([A-Za-z0-9]+(?:Mag|Flux))_([A-Za-z0-9]+)"


def find_error_column(column: str, colnames: Sequence[str]) -> str | None:
    """Find the uncertainty column of magnitude column ``column``.

    Tries ``err_<col>``, ``<col>_err``, ``e_<col>``, ``<col>Err`` and the SDSS CAS
    convention ``<kind>MagErr_<band>`` for ``<kind>Mag_<band>`` (``modelMagErr_r``).

    Examples
    --------
    >>> find_error_column("modelMag_r", ["modelMag_r", "modelMagErr_r"])
    'modelMagErr_r'
    >>> find_error_column("r", ["r", "err_r"])
    'err_r'
    >>> find_error_column("r", ["r"]) is None
    True
    """
    candidates = [f"err_{column}", f"{column}_err", f"e_{column}", f"{column}Err", f"{column}_error"]
    match = re.fullmatch(r"(.*)_([A-Za-z0-9]+)", column)
    if match:
        candidates.append(f"{match.group(1)}Err_{match.group(2)}")
    return next((c for c in candidates if c in colnames), None)


#: A flux column whose median converts to an AB magnitude brighter than this, while its raw median lies
#: in `MAGNITUDE_LIKE` (the span of catalogue magnitudes), holds magnitudes, not fluxes.
BRIGHTEST_MEDIAN_AB = 10.0
MAGNITUDE_LIKE = (10.0, 35.0)


def _in_training_unit(name: str, values: np.ndarray, unit: u.UnitBase | None, trained: str | None) -> np.ndarray:
    """An extra input's values in the unit of its training column; an error naming the column if they cannot be."""
    if unit is not None and unit == u.dimensionless_unscaled:
        unit = None
    if trained is None:
        if unit is not None:
            raise u.UnitConversionError(
                f"extra input column {name!r} has unit {unit}, but the model was trained on it without a unit: "
                "remove the unit if its numbers are those of training, or refit"
            )
        return values
    if unit is None:
        raise ValueError(
            f"extra input column {name!r} has no unit; the model was trained on it in {trained}: give the "
            "column its unit"
        )
    try:
        return values * unit.to(trained)
    except u.UnitConversionError:
        raise u.UnitConversionError(
            f"extra input column {name!r} has unit {unit}, which does not convert to {trained}, its unit in training"
        ) from None


def _one_value_per_row(table: Table, column: str, kind: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """``column_data`` of a one-dimensional numeric column; errors name the column."""
    try:
        values, mask, unit = column_data(table[column])
    except TypeError as err:
        raise TypeError(f"{kind} {column!r} is not numeric") from err
    if values.ndim != 1:
        raise ValueError(f"{kind} {column!r} has shape {values.shape}; expected one value per row")
    return values, mask, unit


def _magnitude_scale(unit: u.UnitBase) -> float | None:
    """The factor to mag of a plain magnitude unit (mag, mmag; ``mag(AB)`` as mag), else None."""
    if isinstance(unit, u.MagUnit):
        return 1.0 if unit.physical_unit == u.AB else None
    if unit.is_equivalent(u.mag) and unit.to(u.mag) > 0:  # not dex, whose factor is -2.5
        return float(unit.to(u.mag))
    return None


def _to_maggies(values: np.ndarray, unit: u.UnitBase) -> np.ndarray | None:
    """Fluxes (or flux errors) in maggies, the AB scale (1 maggy = 3631 Jy); None if not a flux unit."""
    if unit.is_equivalent(u.mgy):
        return values * unit.to(u.mgy)
    if unit.is_equivalent(u.Jy):
        return values * unit.to(u.Jy) / 3631.0
    return None


def _as_magnitudes(values: np.ndarray, unit: u.UnitBase, column: str) -> np.ndarray:
    """AB magnitudes from values in ``unit``: apparent AB magnitudes, maggies or a flux density."""
    scale = _magnitude_scale(unit)
    if scale is not None:
        return values * scale
    if isinstance(unit, u.MagUnit) and unit.physical_unit.is_equivalent(u.Jy):  # e.g. mag(Jy)
        values, unit = (values * unit).physical.value, unit.physical_unit
    maggies = None if isinstance(unit, u.MagUnit) else _to_maggies(values, unit)
    if maggies is None:
        raise u.UnitConversionError(
            f"photometry column {column!r} has unit {unit}; expected apparent AB magnitudes (mag, mmag, "
            "ABmag), maggies or a spectral flux density (ST, bolometric and instrumental magnitudes "
            "are not AB magnitudes)")
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.5 * np.log10(maggies)


def read_magnitude_errors(table: Table, column: str, magnitudes: np.ndarray) -> np.ndarray:
    """Column ``column`` as magnitude errors, NaN where missing or not positive.

    Plain numbers are taken as magnitudes; mag and mmag are converted. An error
    in a flux unit (maggies or a spectral flux density, beside flux columns) is
    turned into magnitudes as ``2.5 / ln 10 * sigma_f / f``, with ``f`` the flux
    of the AB ``magnitudes`` it belongs to. Any other unit raises
    `~astropy.units.UnitConversionError`, naming the column.
    """
    values, mask, unit = _one_value_per_row(table, column, "magnitude error column")
    if unit is not None and unit != u.dimensionless_unscaled:
        scale = _magnitude_scale(unit)
        sigma = None if scale is not None or isinstance(unit, u.MagUnit) else _to_maggies(values, unit)
        if scale is None and sigma is None:
            raise u.UnitConversionError(
                f"magnitude error column {column!r} has unit {unit}; expected mag, mmag, or the "
                "unit of a flux (the errors of flux columns)")
        values = values * scale if scale is not None else _MAG_PER_LN * sigma / 10 ** (-0.4 * magnitudes)
    return np.where(mask | ~(values > 0), np.nan, values)


def _check_flux_looks_like_flux(mags, raw, mask, column: str, unit) -> None:
    """Refuse magnitudes (~20) labelled as a flux unit: converted, they would be galaxies of AB ≈ 5."""
    if _magnitude_scale(unit) is not None:
        return
    good = ~mask & np.isfinite(mags)
    if not good.any():
        return
    looks_like_mags = MAGNITUDE_LIKE[0] <= np.median(raw[good]) <= MAGNITUDE_LIKE[1]
    if looks_like_mags and np.median(mags[good]) < BRIGHTEST_MEDIAN_AB:
        raise ValueError(
            f"photometry column {column!r} is labelled {unit} but its values (median {np.median(raw[good]):.3g}) "
            f"convert to a median AB magnitude of {np.median(mags[good]):.1f}: they look like magnitudes. "
            "Give the column a magnitude unit (u.mag or u.ABmag), or fluxes in the unit it names")


def find_extinction_column(column: str, colnames: Sequence[str]) -> str | None:
    """Find the Galactic-extinction column of an SDSS CAS magnitude column.

    CAS PhotoObj stores magnitudes and fluxes *uncorrected* for Galactic
    extinction (``modelMag_r``, ``petroMag_r``, ``fiberMag_r``, ``modelFlux_r``
    …) beside the extinction ``extinction_r`` (Schlegel, Finkbeiner & Davis
    1998 maps) in the same band; its ``dered_r`` is ``modelMag_r -
    extinction_r``. Columns already corrected (``dered_<band>``) and non-CAS
    names get `None`.

    Examples
    --------
    >>> find_extinction_column("modelMag_r", ["modelMag_r", "extinction_r"])
    'extinction_r'
    >>> find_extinction_column("dered_r", ["dered_r", "extinction_r"]) is None
    True
    >>> find_extinction_column("modelFlux_r", ["modelFlux_r", "extinction_r"])
    'extinction_r'
    >>> find_extinction_column("rmag", ["rmag", "extr"]) is None
    True
    """
    match = re.fullmatch(_CAS_PHOTOMETRY, column)
    if not match:
        return None
    name = f"extinction_{match.group(2)}"
    return name if name in colnames else None


def read_magnitudes(table: Table, column: str) -> np.ndarray:
    """Column ``column`` as float AB-like magnitudes, NaN where missing.

    Plain numbers are taken as magnitudes. Quantity columns may be apparent
    AB magnitudes (mag, mmag, ABmag, or ``mag(Jy)``-like units of a flux
    density), maggies/nanomaggies (SDSS fluxes) or a spectral flux density
    (converted to AB); other units, ST, bolometric and instrumental magnitudes
    among them, raise `~astropy.units.UnitConversionError`.
    A flux-labelled column whose values look like magnitudes (median in
    `MAGNITUDE_LIKE`, converting to AB brighter than `BRIGHTEST_MEDIAN_AB`)
    raises `ValueError`.
    """
    if column not in table.colnames:
        raise KeyError(f"photometry column {column!r} is not in the table (columns: {', '.join(table.colnames)})")
    raw, mask, unit = _one_value_per_row(table, column, "photometry column")
    values = raw
    if unit is not None and unit != u.dimensionless_unscaled:
        values = _as_magnitudes(raw, unit, column)
        _check_flux_looks_like_flux(values, raw, mask, column, unit)
    values = values.copy()
    outside = ~mask & np.isfinite(values) & ((values <= _MAG_RANGE[0]) | (values >= _MAG_RANGE[1]))
    _warn_if_not_magnitudes(column, values[outside], int(np.sum(~mask & np.isfinite(values))))
    values[mask | ~np.isfinite(values) | outside] = np.nan
    return values


#: "Not measured" values of catalogues (SDSS -9999, ECO and RESOLVE 0, others +-99): missing, silently.
_MISSING_MAGNITUDES = (0.0, 99.0, -99.0, 999.0, -999.0, 9999.0, -9999.0)


def _warn_if_not_magnitudes(column: str, outside: np.ndarray, n_values: int) -> None:
    """Warn when more than 5% of a column's values lie outside the magnitude range, not as sentinels."""
    odd = outside[~np.isin(outside, _MISSING_MAGNITUDES)]
    if n_values and odd.size > 0.05 * n_values:
        warnings.warn(
            f"photometry column {column!r}: {odd.size} of {n_values} values (e.g. {odd[0]:.4g}) lie outside "
            f"{_MAG_RANGE[0]:g}-{_MAG_RANGE[1]:g} mag and are taken as missing: are they magnitudes? (fluxes "
            "need a unit, e.g. u.nanomaggy)", UserWarning, stacklevel=3)


class PhotometryEncoder(Encoder):
    """Features from magnitudes in any set of bands: magnitudes, adjacent colours,
    log magnitude errors and a missing-band flag per band.

    A missing or NaN band is not fatal: it is imputed from the nearest measured
    band plus the training sample's median colour between the two, and flagged.
    Rows with fewer than ``min_bands`` measured bands are reported unusable.

    Parameters
    ----------
    columns : sequence of str
        Magnitude columns in wavelength order (colours are taken between
        neighbours), e.g. ``["u", "g", "r", "i", "z"]`` or LSST's ugrizy.
    errors : "auto", None, sequence or mapping, optional
        Error columns: found automatically (see `find_error_column`) with
        ``"auto"``; none with `None`; or given explicitly.
    min_bands : int, optional
        Fewest measured bands for a usable row; default: half the bands, at least 1.
    extinction : "auto", None or mapping, optional
        Galactic-extinction correction, subtracted from the magnitudes before
        anything else. ``"auto"`` (default) follows the SDSS CAS convention:
        magnitudes named ``<kind>Mag_<band>`` (and fluxes ``<kind>Flux_<band>``)
        are uncorrected and are dereddened
        with ``extinction_<band>`` when the training table has that column for
        every band (see `find_extinction_column`). `None` never dereddens (the
        magnitudes are taken as already corrected, e.g. ``dered_<band>``); a
        mapping ``{magnitude column: extinction column}`` names the columns.
        What was applied is saved with the model, and `transform` refuses a
        table that does not carry the same extinction columns.
    extra : sequence of str or mapping, optional
        Further scalar inputs (sizes such as ``petroR50_r``, fibre magnitudes,
        surface brightness), each one standardised feature. A mapping
        ``{column: "log" or "linear"}`` says whether to take ``log10``; in a
        plain sequence, columns with an angular unit are converted to arcsec and
        logged, others used as they are. Missing values get the training median.
        Each is read in its training column's unit (angles in arcsec), saved
        with the model: a column without that unit, or in one that does not
        convert to it, is refused by name.
    """

    name = "photometry"
    #: Named in ``GalaxyPosterior(encoder="photometry")``, it reads the estimator's ``photometry`` columns.
    estimator_options = ("photometry",)

    def __init__(
        self,
        columns: Sequence[str],
        errors: str | Sequence[str] | Mapping[str, str] | None = "auto",
        min_bands: int | None = None,
        extinction: str | Mapping[str, str] | None = "auto",
        extra: Sequence[str] | Mapping[str, str] = (),
    ) -> None:
        self.columns = columns
        self.errors = errors
        self.min_bands = min_bands
        self.extinction = extinction
        self.extra = extra

    @classmethod
    def from_estimator(cls, **options: Any) -> PhotometryEncoder:
        """The encoder of the estimator's ``photometry`` columns (other parameters at their defaults).

        A subclass whose `estimator_options` leave out ``"photometry"`` is
        built like any encoder, ``cls(**options)``.

        Raises
        ------
        ValueError
            If ``photometry`` is None or empty.
        """
        if "photometry" not in cls.estimator_options:
            return super().from_estimator(**options)
        photometry = options.pop("photometry")
        if not photometry:
            raise ValueError(f"encoder {cls.name!r} needs magnitude columns, but photometry={photometry!r}")
        return cls(list(photometry), **options)

    # -- reading ---------------------------------------------------------------
    def _resolve_errors(self, table: Table) -> list[str | None]:
        if self.errors is None:
            return [None] * len(self.columns)
        if self.errors == "auto":
            return [find_error_column(c, table.colnames) for c in self.columns]
        if isinstance(self.errors, Mapping):
            return [self.errors.get(c) for c in self.columns]
        errors = list(self.errors)
        if len(errors) != len(self.columns):
            raise ValueError(f"{len(errors)} error columns given for {len(self.columns)} photometry columns")
        return errors

    def _resolve_extinction(self, table: Table) -> list[str | None]:
        if self.extinction is None:
            return [None] * len(self.columns)
        if isinstance(self.extinction, Mapping):
            return [self.extinction.get(c) for c in self.columns]
        if self.extinction != "auto":
            raise ValueError(f"extinction must be 'auto', None or a mapping, got {self.extinction!r}")
        found = [find_extinction_column(c, table.colnames) for c in self.columns]
        cas = [c for c in self.columns if re.fullmatch(_CAS_PHOTOMETRY, c)]
        # a magnitude column absent from the table is reported by _read, by name
        missing = [c for c, e in zip(self.columns, found) if e is None and c in cas and c in table.colnames]
        if any(found) and missing:
            raise ValueError(f"extinction columns found for some magnitudes but not for {', '.join(missing)}: "
                             "pass extinction={magnitude: extinction column} or extinction=None")
        return found

    def _check_extinction(self, table: Table) -> None:
        """Refuse a table whose extinction columns do not match what the model was fitted with."""
        used = [e for e in self.extinction_columns_ if e is not None]
        missing = [e for e in used if e not in table.colnames]
        if missing:
            raise KeyError(
                f"the model dereddens its magnitudes with {', '.join(used)}, but the table lacks "
                f"{', '.join(missing)}: pass the SDSS CAS extinction columns beside the uncorrected "
                "magnitudes (a table of already corrected magnitudes needs a model fitted with extinction=None)"
            )
        if self.extinction == "auto" and not used:
            present = [e for e in (find_extinction_column(c, table.colnames) for c in self.columns) if e]
            if present:
                raise ValueError(
                    f"the table has {', '.join(present)}, so its {', '.join(self.columns)} are uncorrected "
                    "SDSS CAS magnitudes, but the model was fitted without extinction columns (on magnitudes "
                    "taken as already corrected): refit with those columns, or drop them from the table"
                )

    def _read_extinction(self, table: Table, j: int) -> np.ndarray:
        name = self.extinction_columns_[j]
        if name is None:
            return np.zeros(len(table))
        values, mask, unit = _one_value_per_row(table, name, "extinction column")
        if unit is not None and unit != u.dimensionless_unscaled:
            scale = _magnitude_scale(unit)
            if scale is None:
                raise u.UnitConversionError(f"extinction column {name!r} has unit {unit}; expected mag")
            values = values * scale
        return np.where(mask, np.nan, values)

    def _read_extra(self, table: Table) -> np.ndarray:
        out = np.full((len(table), len(self.extra_columns_)), np.nan)
        for j, (name, scale) in enumerate(zip(self.extra_columns_, self.extra_scales_)):
            if name not in table.colnames:
                raise KeyError(f"extra input column {name!r} is not in the table")
            values, mask, unit = _one_value_per_row(table, name, "extra input column")
            if self.extra_units_ is None:  # models saved before the units were recorded
                values = values * unit.to(u.arcsec) if unit is not None and unit.physical_type == "angle" else values
            else:
                values = _in_training_unit(name, values, unit, self.extra_units_[j])
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.log10(np.where(values > 0, values, np.nan)) if scale == "log" else values
            out[:, j] = np.where(mask, np.nan, values)
        return out

    def _extra_units(self, table: Table) -> list[str | None]:
        """The unit each extra input is read in: arcsec for angles, the training column's own otherwise."""
        units = []
        for name in self.extra_columns_:
            unit = getattr(table[name], "unit", None) if name in table.colnames else None
            unit = None if unit is None or u.Unit(unit) == u.dimensionless_unscaled else u.Unit(unit)
            units.append(None if unit is None else "arcsec" if unit.physical_type == "angle" else unit.to_string())
        return units

    def _resolve_extra(self, table: Table) -> tuple[list[str], list[str]]:
        if isinstance(self.extra, Mapping):
            bad = {k: v for k, v in self.extra.items() if v not in ("log", "linear")}
            if bad:
                raise ValueError(f"extra inputs must map to 'log' or 'linear', got {bad}")
            return list(self.extra), list(self.extra.values())
        names = [self.extra] if isinstance(self.extra, str) else list(self.extra)
        scales = []
        for name in names:
            unit = getattr(table[name], "unit", None) if name in table.colnames else None
            scales.append("log" if unit is not None and u.Unit(unit).physical_type == "angle" else "linear")
        return names, scales

    def _read(self, table: Table) -> tuple[np.ndarray, np.ndarray]:
        observed = [read_magnitudes(table, c) for c in self.columns]
        mags = np.column_stack([m - self._read_extinction(table, j) for j, m in enumerate(observed)])
        errs = np.full_like(mags, np.nan)
        for j, name in enumerate(self.error_columns_):
            if name is None:
                continue
            if name not in table.colnames:
                raise KeyError(f"magnitude error column {name!r} (used in training) is not in the table")
            errs[:, j] = read_magnitude_errors(table, name, observed[j])
        errs[np.isnan(mags)] = np.nan
        return mags, errs

    # -- fitting ---------------------------------------------------------------
    def fit(self, table: Table, images: Any = None) -> PhotometryEncoder:
        if not self.columns:
            raise ValueError("the photometry encoder needs at least one magnitude column")
        self.error_columns_ = self._resolve_errors(table)
        self.extinction_columns_ = self._resolve_extinction(table)
        self.extra_columns_, self.extra_scales_ = self._resolve_extra(table)
        self.extra_units_ = self._extra_units(table)
        mags, errs = self._read(table)
        extra = self._read_extra(table)
        self.extra_fill_ = np.array([np.nanmedian(col) if np.isfinite(col).any() else 0.0 for col in extra.T])
        n_bands = len(self.columns)
        self.min_bands_ = self.min_bands or max(1, (n_bands + 1) // 2)
        measured = np.isfinite(mags)
        if not measured.any(axis=0).all():
            empty = [c for c, ok in zip(self.columns, measured.any(axis=0)) if not ok]
            raise ValueError(f"photometry columns {empty} have no measured value in the training table")

        # median colour between every pair of bands, for imputing a missing band
        offsets = np.zeros((n_bands, n_bands))
        for a in range(n_bands):
            for b in range(n_bands):
                both = measured[:, a] & measured[:, b]
                if both.any():
                    offsets[a, b] = np.median(mags[both, a] - mags[both, b])
                else:
                    offsets[a, b] = np.nanmedian(mags[:, a]) - np.nanmedian(mags[:, b])
        self.colour_offsets_ = offsets
        log_err = np.log10(errs)
        self.error_fill_ = np.array([
            np.nanpercentile(log_err[:, j], 95) if np.isfinite(log_err[:, j]).any() else 0.0
            for j in range(n_bands)
        ])
        raw = self._raw_features(mags, errs, extra)
        self.feature_mean_ = raw.mean(axis=0)
        std = raw.std(axis=0)
        self.feature_scale_ = np.where(std > 0, std, 1.0)
        self.n_features_ = raw.shape[1]
        return self

    def _impute(self, mags: np.ndarray) -> np.ndarray:
        mags = mags.copy()
        measured = np.isfinite(mags)
        idx = np.arange(mags.shape[1])
        for j in range(mags.shape[1]):
            missing = ~measured[:, j]
            if not missing.any():
                continue
            # nearest measured band in wavelength order
            distance = np.abs(idx - j)[None, :] + np.where(measured[missing], 0, 10 * len(idx))
            nearest = distance.argmin(axis=1)
            rows = np.flatnonzero(missing)
            ref = mags[rows, nearest]
            mags[rows, j] = ref + self.colour_offsets_[j, nearest]
        return mags

    def _raw_features(self, mags: np.ndarray, errs: np.ndarray, extra: np.ndarray) -> np.ndarray:
        missing = ~np.isfinite(mags)
        filled = self._impute(mags)
        colours = filled[:, :-1] - filled[:, 1:]
        log_err = np.log10(errs)
        log_err = np.where(np.isfinite(log_err), log_err, self.error_fill_)
        has_errors = [c is not None for c in self.error_columns_]
        extra = np.where(np.isfinite(extra), extra, self.extra_fill_)
        parts = [filled, colours, log_err[:, has_errors], missing.astype(float), extra]
        raw = np.concatenate(parts, axis=1)
        return np.nan_to_num(raw, nan=0.0)

    # -- encoding -------------------------------------------------------------
    def transform(self, table: Table, images: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if not self.is_fitted:
            raise RuntimeError("the photometry encoder is not fitted")
        self._check_extinction(table)
        mags, errs = self._read(table)
        usable = np.isfinite(mags).sum(axis=1) >= self.min_bands_
        if len(table) == 0:
            return np.zeros((0, self.n_features_), np.float32), usable
        raw = self._raw_features(mags, errs, self._read_extra(table))
        features = (raw - self.feature_mean_) / self.feature_scale_
        return features.astype(np.float32), usable

    @property
    def input_columns(self) -> list[str]:
        """Every table column the fitted encoder reads: magnitudes, errors, extinctions, extra inputs."""
        names = [*self.columns, *self.error_columns_, *self.extinction_columns_, *self.extra_columns_]
        return list(dict.fromkeys(n for n in names if n))

    def feature_names(self) -> list[str]:
        bands = self.columns
        names = list(bands) + [f"{a}-{b}" for a, b in zip(bands[:-1], bands[1:])]
        names += [f"log_err_{c}" for c, e in zip(bands, self.error_columns_) if e is not None]
        names += [f"missing_{c}" for c in bands]
        return names + [f"log_{c}" if s == "log" else c for c, s in zip(self.extra_columns_, self.extra_scales_)]

    # -- persistence ----------------------------------------------------------
    def get_config(self) -> dict:
        return {
            "columns": list(self.columns),
            "errors": self.errors if isinstance(self.errors, (str, type(None))) else list(self.error_columns_),
            "min_bands": self.min_bands,
            "extinction": dict(self.extinction) if isinstance(self.extinction, Mapping) else self.extinction,
            "extinction_columns_": self.extinction_columns_,
            "extra_columns_": self.extra_columns_,
            "extra_scales_": self.extra_scales_,
            "extra_units_": self.extra_units_,
            "error_columns_": self.error_columns_,
            "min_bands_": self.min_bands_,
            "n_features_": self.n_features_,
        }

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {
            "colour_offsets": self.colour_offsets_,
            "error_fill": self.error_fill_,
            "feature_mean": self.feature_mean_,
            "feature_scale": self.feature_scale_,
            "extra_fill": self.extra_fill_,
        }

    @classmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray]) -> PhotometryEncoder:
        # models saved before dereddening and extra inputs existed used neither
        extra = dict(zip(config.get("extra_columns_", []), config.get("extra_scales_", [])))
        enc = cls(config["columns"], config["errors"], config["min_bands"])  # subclasses may take no more
        enc.extinction, enc.extra = config.get("extinction"), extra
        enc.extinction_columns_ = list(config.get("extinction_columns_") or [None] * len(enc.columns))
        enc.extra_columns_, enc.extra_scales_ = list(extra), list(extra.values())
        enc.extra_units_ = config.get("extra_units_")  # None: saved before the units were recorded
        enc.extra_fill_ = np.asarray(arrays.get("extra_fill", np.zeros(0)), dtype=float)
        enc.error_columns_ = list(config["error_columns_"])
        enc.min_bands_ = int(config["min_bands_"])
        enc.n_features_ = int(config["n_features_"])
        enc.colour_offsets_ = np.asarray(arrays["colour_offsets"], dtype=float)
        enc.error_fill_ = np.asarray(arrays["error_fill"], dtype=float)
        enc.feature_mean_ = np.asarray(arrays["feature_mean"], dtype=float)
        enc.feature_scale_ = np.asarray(arrays["feature_scale"], dtype=float)
        return enc
