"""The quantities a `~astro_galpost.GalaxyPosterior` infers, how catalogs spell them,
and how they are grouped into jointly modelled, chained blocks.

Each :class:`Target` knows its unit, the catalog column it is read from by default,
how SDSS/MPA-JHU catalogs spell a missing value, the space it is modelled in
(emission-line fluxes in log10, as in the seed paper, softened with an asinh below
the noise level so that non-detections keep their place) and the group whose
joint flow models it. Each :class:`TargetGroup` declares its flow, the groups it
is conditioned on (the chain rule: ``p(core, lines | x) = p(core | x)
p(lines | core, x)``) and whether it has a "measurable" classifier. The nine
targets and four groups of the paper are registered here; other packages add
targets and groups through the ``astro_galpost.targets`` and
``astro_galpost.groups`` entry-point groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.uncertainty import Distribution
from scipy import stats

from ..physics.lines import FLUX_UNIT
from ..utils.columns import column_data
from ..utils.registry import Registry

__all__ = [
    "Target",
    "LabelWarning",
    "TARGETS",
    "register_target",
    "TargetGroup",
    "GROUPS",
    "register_group",
    "group_order",
    "LINE_FLUX_UNIT",
    "CORE",
    "BLACK_HOLE",
    "METALLICITY",
    "LINES",
]

#: Unit of SDSS/MPA-JHU emission-line fluxes.
LINE_FLUX_UNIT = FLUX_UNIT

#: Names of the built-in target groups. Black-hole mass, the lines and
#: metallicity are chained on the core group (metallicity on the lines too).
CORE, BLACK_HOLE, LINES, METALLICITY = "core", "black_hole", "lines", "metallicity"

_SPACES = ("linear", "log10", "asinh")


@dataclass(frozen=True)
class Target:
    """A quantity to infer.

    Parameters
    ----------
    name : str
        Registry name, also the prefix of the output columns (``<name>_p50``).
    unit : `~astropy.units.UnitBase`
        Unit of catalog values and of the returned posterior. Logarithmic
        quantities use `~astropy.units.dex` units, e.g. ``u.dex(u.Msun)``.
    column : str
        Default catalog column.
    group : str
        Group whose joint flow models this target (``"core"``, ``"black_hole"``,
        ``"lines"``, ``"metallicity"``, a group registered with
        :func:`register_group`, or a new name, which becomes its own
        unchained group with a RealNVP flow).
    space : {"linear", "log10", "asinh"}
        Space the model works in: ``"log10"`` takes log10 of the (positive)
        catalog values; ``"asinh"`` is log10 softened below ``softening``,
        ``log10(b) + asinh(x / 2b) / ln 10`` (the form of SDSS asinh magnitudes,
        Lupton, Gunn & Szalay 1999): equal to log10(x) within 0.01 dex for
        x > 7b, and defined for the zero and negative fluxes that spectroscopic
        pipelines measure for undetected lines.
    missing : tuple of float
        Values that mean "not measured" in catalogs, besides NaN and masks.
    valid_range : (float, float)
        Values outside this closed range (in catalog units) are treated as
        missing too, e.g. non-positive fluxes, which have no log10.
    description : str
        One line for tables and plots.
    derive : callable, optional
        ``derive(table) -> column or None``: computes the label from other
        columns when ``column`` is absent (black-hole mass from σ).
    softening : float
        The ``b`` of the ``"asinh"`` space, in :attr:`unit` (about the typical
        measurement error).
    """

    name: str
    unit: u.UnitBase
    column: str
    group: str
    space: str = "linear"
    missing: tuple[float, ...] = (-9999.0, -999.0, -99.0)
    valid_range: tuple[float, float] = (-np.inf, np.inf)
    description: str = ""
    derive: Callable[[Table], object] | None = field(default=None, compare=False)
    softening: float = 1.0

    def __post_init__(self) -> None:
        if self.space not in _SPACES:
            raise ValueError(f"target {self.name!r}: space must be one of {_SPACES}, got {self.space!r}")
        if not self.softening > 0:
            raise ValueError(f"target {self.name!r}: softening must be positive, got {self.softening!r}")
        object.__setattr__(self, "unit", u.Unit(self.unit))

    @property
    def is_logarithmic(self) -> bool:
        """Whether catalog values are in a logarithmic (dex/mag) unit."""
        return isinstance(self.unit, u.FunctionUnitBase)

    @property
    def in_log10(self) -> bool:
        """Whether the model works in (softened) log10 of the catalog values."""
        return self.space in ("log10", "asinh")

    # -- catalog values ------------------------------------------------------
    def read(self, table: Table, column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read the labels of this target from ``table``.

        Returns
        -------
        values : `~numpy.ndarray`
            float64 values in :attr:`unit` (NaN where missing).
        valid : `~numpy.ndarray`
            bool, True where the label is usable.

        Raises
        ------
        KeyError
            When the column is absent and cannot be derived.
        astropy.units.UnitConversionError
            When the column carries a unit not convertible to :attr:`unit`.
        """
        column = column or self.column
        if column in table.colnames:
            col = table[column]
        elif self.derive is not None and column == self.column:
            col = self.derive(table)
            if col is None:
                raise KeyError(
                    f"target {self.name!r}: no column {column!r} in the table and nothing "
                    "to derive it from"
                )
        else:
            raise KeyError(
                f"target {self.name!r}: no column {column!r} in the table "
                f"(columns: {', '.join(table.colnames)})"
            )
        return self.values_from(col, column)

    def values_from(self, col, name: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Convert a column, Quantity or array to (values, valid); see :meth:`read`.

        Warns (`LabelWarning`) when values outside :attr:`valid_range` are
        dropped, when a unitless column of a logarithmic target looks linear,
        and when a unitless flux column looks like it is in erg/s/cm² rather
        than in :attr:`unit`.
        """
        where = f" column {name!r}" if name else ""
        try:
            values, mask, unit = column_data(col)
        except TypeError as err:
            raise TypeError(f"target {self.name!r}:{where} is not numeric") from err
        if values.ndim > 1 and values.size != len(values):
            raise ValueError(f"target {self.name!r}:{where} has shape {values.shape}; expected one value per row")
        values = np.array(self.convert(values, unit, name), dtype=float).reshape(-1)
        valid = np.isfinite(values) & ~mask.reshape(-1)
        for sentinel in self.missing:
            valid &= values != sentinel
        if unit is None or unit == u.dimensionless_unscaled:
            self._check_unitless(values[valid], name)
        valid &= self._in_range(values, valid, name)
        values[~valid] = np.nan
        return values, valid

    def convert(self, values, unit: u.UnitBase | None, name: str = "") -> np.ndarray:
        """Plain ``values`` in ``unit`` converted to :attr:`unit`.

        Values without a unit (``None`` or dimensionless) are taken to be in
        :attr:`unit` already: catalogs store most quantities unitless.

        Parameters
        ----------
        values : array-like
            Plain numbers.
        unit : `~astropy.units.UnitBase` or None
            Their unit.
        name : str, optional
            Column name, for messages.

        Raises
        ------
        astropy.units.UnitConversionError
            When ``unit`` is not convertible to :attr:`unit`, is a logarithmic
            unit for a plain-number target (dex(1) would convert 12 + log(O/H)
            = 8.9 to 8e8), or is a unit string astropy does not recognise
            (such as a FITS ``TUNIT`` of ``1E-17 erg/cm^2/s``).
        """
        if unit is None or unit == u.dimensionless_unscaled:
            return values
        if isinstance(unit, u.UnrecognizedUnit):
            raise self._unit_error(unit, name, "which astropy does not recognise")
        plain = self.unit == u.dimensionless_unscaled
        if plain and (isinstance(unit, u.FunctionUnitBase) or unit.is_equivalent(u.dex)):
            raise self._unit_error(unit, name, "a logarithmic unit")
        try:
            return _as_quantity(values, unit).to_value(self.unit)
        except u.UnitsError as err:
            raise self._unit_error(unit, name, "which cannot be converted") from err

    def _unit_error(self, unit: u.UnitBase, name: str, why: str) -> u.UnitConversionError:
        """The error for a column whose unit cannot be used, naming target, column, unit and what is expected."""
        shown = repr(unit.name) if isinstance(unit, u.UnrecognizedUnit) else str(unit)
        if self.unit == u.dimensionless_unscaled:
            expected = ("a plain number (if the values are already the target's, e.g. 12 + log(O/H), "
                        "drop the unit)")
        else:
            expected = f"{self.unit} (or a unit convertible to it; without a unit the values are taken in it)"
        return u.UnitConversionError(f"target {self.name!r}: {_where(name)} has unit {shown}, {why}; "
                                     f"expected {expected}")

    def _check_unitless(self, values: np.ndarray, name: str) -> None:
        """Warn when the usable values of a unitless column are, by their look, not in :attr:`unit`."""
        if self.is_logarithmic and _looks_linear(values):
            physical = self.unit.physical_unit
            _warn(f"target {self.name!r}: {_where(name)} has no unit and is taken as {self.unit}, "
                  f"but its values look linear, not logarithmic (all positive, median {np.median(values):.3g}, "
                  f"strongly right-skewed while their log10 is not). If they are in {physical}, "
                  f"give the column that unit (e.g. col.unit = {physical.to_string()!r}) or take its log10")
        flux = u.erg / u.s / u.cm**2
        if values.size and self.unit.is_equivalent(flux) and np.median(np.abs(values)) < _FLUX_MEDIAN_MIN:
            _warn(f"target {self.name!r}: {_where(name)} has no unit and a median |value| of "
                  f"{np.median(np.abs(values)):.3g}, so it is taken in {self.unit} (SDSS's unit): "
                  f"values in {flux} need that unit on the column (col.unit = 'erg / (s cm2)') "
                  f"or multiplying by {1 / self.unit.to(flux):.3g}")

    def _in_range(self, values: np.ndarray, valid: np.ndarray, name: str) -> np.ndarray:
        """Where ``values`` lie in :attr:`valid_range` (and are positive for ``"log10"``); warns about usable values outside."""
        lo, hi = self.valid_range
        with np.errstate(invalid="ignore"):
            inside = (values >= lo) & (values <= hi)
            if self.space == "log10":
                inside &= values > 0
        outside = int(np.sum(valid & ~inside))
        if outside:
            positive = " and positive" if self.space == "log10" else ""
            what = f"values of column {name!r}" if name else "values"
            _warn(f"target {self.name!r}: {outside} of {int(valid.sum())} {what} lie outside "
                  f"the valid range [{lo:g}, {hi:g}]{positive} ({self.unit}); they are treated as missing")
        return inside

    # -- model space ------------------------------------------------------------
    def to_model(self, values: np.ndarray) -> np.ndarray:
        """Catalog values → the space the model works in."""
        if self.space == "log10":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log10(values)
        if self.space == "asinh":
            b = self.softening
            return np.log10(b) + np.arcsinh(np.asarray(values, dtype=float) / (2 * b)) / np.log(10.0)
        return np.asarray(values, dtype=float)

    def from_model(self, values: np.ndarray) -> np.ndarray:
        """Model-space values → catalog values (same unit as :attr:`unit`)."""
        if self.space == "log10":
            return np.power(10.0, values)
        if self.space == "asinh":
            b = self.softening
            return 2 * b * np.sinh((np.asarray(values, dtype=float) - np.log10(b)) * np.log(10.0))
        return values

    def quantity(self, values: np.ndarray):
        """Wrap catalog-space values as a Quantity (a `~astropy.units.Dex` for dex units)."""
        return _as_quantity(values, self.unit)

    def distribution(self, samples: np.ndarray) -> Distribution:
        """Wrap samples of shape ``(N, n_samples)`` in catalog space as a Distribution."""
        return Distribution(self.quantity(samples))


def _as_quantity(values: np.ndarray, unit: u.UnitBase) -> u.Quantity:
    """A Quantity of the class the unit needs: `~astropy.units.Dex` for dex(...) units."""
    if isinstance(unit, u.FunctionUnitBase):
        return unit._quantity_class(values, unit)
    return u.Quantity(values, unit, copy=False)


class LabelWarning(UserWarning):
    """Label values that are dropped or look like they are not in the target's unit."""


def _where(name: str) -> str:
    """``column 'name'`` for messages, or ``the values`` for an array without a name."""
    return f"column {name!r}" if name else "the values"


def _warn(message: str) -> None:
    warnings.warn(message, LabelWarning, stacklevel=4)


# A unitless column of a log target "looks linear" when it has at least this many usable values, all
# positive, with a skewness above _LINEAR_SKEW that log10 lowers by more than _LINEAR_SKEW_DROP.
# Linear SFRs and masses (ECO, RESOLVE, the mock) have skewness 1.9-27 that log10 brings to -1.0-0.6;
# log columns have skewness below 1.5 (ECO/RESOLVE log M*, log M_gas; MPA-JHU-like log SFR has
# negatives), or a log10 about as skewed (ECO's log M_halo, 1.9 and 1.7).
_LINEAR_MIN_VALUES = 20
_LINEAR_SKEW = 1.5
_LINEAR_SKEW_DROP = 1.0
# SDSS/MPA-JHU fluxes in 1e-17 erg/s/cm² have medians of 10-1000; erg/s/cm² values are ~1e-15
_FLUX_MEDIAN_MIN = 1e-10


def _looks_linear(values: np.ndarray) -> bool:
    """Whether values given as log10 look like linear ones: all positive, strongly right-skewed, their log10 not."""
    if values.size < _LINEAR_MIN_VALUES or np.any(values <= 0) or np.ptp(values) == 0:
        return False
    skew = stats.skew(values)
    return bool(skew > _LINEAR_SKEW and skew - stats.skew(np.log10(values)) > _LINEAR_SKEW_DROP)


@dataclass(frozen=True)
class TargetGroup:
    """How one group of targets is modelled: a declared property, not estimator code.

    Parameters
    ----------
    name : str
        Group name, the ``group`` of its targets.
    flow : str
        Registered flow (`astro_galpost.model.flows.FLOWS`) for the group's residuals.
        A group that ends up with a single target cannot couple: ``"realnvp"``
        is then replaced by ``"nsf"``.
    condition_on : tuple of str
        Groups whose target values condition this group's flow (and its
        classifier): true values in training, sampled ones at inference. Groups
        absent from a model are skipped.
    detect : bool
        Whether to train a classifier of "the group's targets are measurable";
        the flow then describes p(targets | x, measurable).
    flow_options : dict
        Keyword options of the flow factory.
    """

    name: str
    flow: str = "realnvp"
    condition_on: tuple[str, ...] = ()
    detect: bool = False
    flow_options: dict = field(default_factory=dict, compare=False)


#: The registry of target groups: ``GROUPS["lines"]``.
GROUPS: Registry[TargetGroup] = Registry("target group", "astro_galpost.groups")


def register_group(group: TargetGroup, *, overwrite: bool = False) -> TargetGroup:
    """Add ``group`` to :data:`GROUPS` under its name."""
    return GROUPS.register(group.name, group, overwrite=overwrite)


def group_order(names: list[str]) -> list[str]:
    """The groups ``names`` in sampling order: every group after those it is conditioned on.

    Ties keep the order of ``names``. Unregistered names are unchained groups.

    Raises
    ------
    ValueError
        When the declared conditioning among ``names`` has a cycle.
    """
    present = set(names)
    parents = {n: [c for c in (GROUPS[n].condition_on if n in GROUPS else ()) if c in present] for n in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and all(p in order for p in parents[n])]
        if not ready:
            raise ValueError(f"the conditioning of target groups {sorted(present - set(order))} has a cycle")
        order.append(ready[0])
    return order


#: The registry of targets: ``TARGETS["log_mstar"]``.
TARGETS: Registry[Target] = Registry("target", "astro_galpost.targets")


def register_target(target: Target, *, overwrite: bool = False) -> Target:
    """Add ``target`` to :data:`TARGETS` under its name."""
    return TARGETS.register(target.name, target, overwrite=overwrite)


def _derive_log_mbh(table: Table):
    """Black-hole mass from a velocity-dispersion column, if the table has one."""
    from ..physics import SIGMA_COLUMN_CANDIDATES, add_mbh_column

    if not any(name in table.colnames for name in SIGMA_COLUMN_CANDIDATES):
        return None
    # work on a shallow copy: reading labels must never modify the user's table
    return add_mbh_column(Table(table, copy=False))["log_mbh"]


# galSpecLine writes a flux of exactly 0 (with a non-positive error) where no fit was made;
# a measured flux is never exactly 0
_LINE_MISSING = (-9999.0, -999.0, -99.0, 0.0)
# MPA-JHU line-flux errors are 1-5e-17 erg/s/cm² for most SDSS galaxies: b = 2e-17 keeps
# fluxes above 14e-17 within 0.01 dex of log10 and squeezes pure noise into a narrow range
_LINE_SOFTENING = 2.0
# |flux| above 5e5 (5e-12 erg/s/cm²) is a failed fit, not a line: the brightest of the 2827 ECO galaxies
# (eco_snr5.fits, S/N > 5) has 4.4e4; the failed galSpecLine fits of skyserver_samples/galspecline.csv
# and resolve.fits have 9.9e5-3.7e10 with errors of 2.8e6-4.2e8 (an r_fibre = 14 galaxy would need an
# Hα equivalent width of ~800 Å to reach 5e5)
_LINE_RANGE = (-5e5, 5e5)
_BUILTIN: Sequence[Target] = (
    Target("log_mstar", u.dex(u.Msun), "lgm_tot_p50", CORE, valid_range=(0.0, 14.0),
           description="stellar mass, log10 M*/M☉"),
    # log SFR = -1 is a real value (0.1 M☉/yr), so -1 is not a sentinel here
    Target("log_sfr", u.dex(u.Msun / u.yr), "sfr_tot_p50", CORE, valid_range=(-8.0, 5.0),
           description="star formation rate, log10 SFR/(M☉/yr)"),
    Target("redshift", u.dimensionless_unscaled, "z", CORE,
           missing=(-9999.0, -999.0, -99.0, -1.0), valid_range=(-0.01, 10.0),
           description="spectroscopic redshift"),
    Target("log_mbh", u.dex(u.Msun), "log_mbh", BLACK_HOLE, valid_range=(0.0, 14.0),
           description="central black-hole mass from M–σ, log10 M_BH/M☉",
           derive=_derive_log_mbh),
    Target("metallicity", u.dimensionless_unscaled, "oh_p50", METALLICITY,
           missing=(-9999.0, -999.0, -99.9, -99.0, -1.0), valid_range=(6.0, 10.0),
           description="gas-phase metallicity in the 3-arcsec SDSS fibre, 12 + log10(O/H)"),
    Target("halpha", LINE_FLUX_UNIT, "h_alpha_flux", LINES, "asinh", _LINE_MISSING, _LINE_RANGE,
           softening=_LINE_SOFTENING,
           description="Hα 6563 flux in the 3-arcsec SDSS fibre"),
    Target("hbeta", LINE_FLUX_UNIT, "h_beta_flux", LINES, "asinh", _LINE_MISSING, _LINE_RANGE,
           softening=_LINE_SOFTENING,
           description="Hβ 4861 flux in the 3-arcsec SDSS fibre"),
    Target("nii_6584", LINE_FLUX_UNIT, "nii_6584_flux", LINES, "asinh", _LINE_MISSING, _LINE_RANGE,
           softening=_LINE_SOFTENING,
           description="[N II] 6584 flux in the 3-arcsec SDSS fibre"),
    Target("oiii_5007", LINE_FLUX_UNIT, "oiii_5007_flux", LINES, "asinh", _LINE_MISSING, _LINE_RANGE,
           softening=_LINE_SOFTENING,
           description="[O III] 5007 flux in the 3-arcsec SDSS fibre"),
)
for _target in _BUILTIN:
    register_target(_target)
del _target

# M_BH is chained on the core rather than inside its flow: σ, hence M_BH, is
# missing for 30-50% of SDSS galaxies, and a missing last link of a chain is
# marginalised exactly by leaving its factor out (docs/design.rst, "Missing labels").
for _group in (
    TargetGroup(CORE, "realnvp"),
    TargetGroup(BLACK_HOLE, "affine1d", condition_on=(CORE,)),
    TargetGroup(LINES, "realnvp", condition_on=(CORE,)),
    TargetGroup(METALLICITY, "affine1d", condition_on=(CORE, LINES), detect=True),
):
    register_group(_group)
del _group
