"""Property-based tests (hypothesis): random, hostile tables thrown at `fit` and `predict`.

Whatever the table, the package either raises an exception of its own (raised
from its code, with a message) or returns output that is finite wherever it is
not masked: never a bare torch/numpy error, never NaN on a row marked usable.
One tiny model is fitted once for the module; `fit` gets a few examples only.
"""

import traceback
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table

from astro_galpost import GalaxyPosterior

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BANDS = [f"modelMag_{b}" for b in "ugriz"]
ERRORS = [f"modelMagErr_{b}" for b in "ugriz"]
SETTINGS = {"deadline": None, "derandomize": True,
            "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}

#: How one column of a table is spoiled.
SPOILERS = ("keep", "nan", "inf", "-inf", "sentinel", "zero", "masked", "huge", "strings", "jansky",
            "nanomaggy", "km", "ints", "drop")


def spoil(table: Table, column: str, how: str, rows: np.ndarray) -> Table:
    """Return ``table`` with ``column`` spoiled ``how`` on ``rows`` (a bool mask)."""
    if how == "drop":
        table.remove_column(column)
        return table
    values = np.array(table[column], dtype=float)
    if how in ("nan", "inf", "-inf", "sentinel", "zero", "huge"):
        values[rows] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "sentinel": -9999.0, "zero": 0.0,
                        "huge": 1e300}[how]
        table[column] = values
    elif how == "masked":
        table[column] = MaskedColumn(values, mask=rows)
    elif how == "strings":
        table[column] = np.where(rows, "n/a", values.astype(str))
    elif how == "ints":
        table[column] = np.round(values).astype(int)
    elif how in ("jansky", "nanomaggy", "km"):
        unit = {"jansky": u.Jy, "nanomaggy": u.nanomaggy, "km": u.km}[how]
        table = QTable(table)
        table[column] = values * unit
    return table


@st.composite
def hostile_tables(draw, base: Table, columns: list[str]):
    n = draw(st.integers(0, 12))
    start = draw(st.integers(0, len(base) - 12))
    table = Table(base[start:start + n], copy=True)
    for column in draw(st.lists(st.sampled_from(columns), max_size=4, unique=True)):
        if column not in table.colnames:
            continue
        how = draw(st.sampled_from(SPOILERS))
        rows = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        table = spoil(table, column, how, rows)
    return table


def assert_named_error(err: BaseException) -> None:
    """The exception was raised by astro_galpost's own code, with a message."""
    raised_in = traceback.extract_tb(err.__traceback__)[-1].filename
    assert "astro_galpost" in raised_in, f"bare {type(err).__name__} from {raised_in}: {err}"
    assert str(err).strip(), f"{type(err).__name__} without a message"


def assert_finite_where_usable(out: QTable, columns: list[str]) -> None:
    usable = ~np.ma.getmaskarray(out["ood_score"])
    for name in columns:
        col = out[name]
        values = np.asarray(getattr(getattr(col, "unmasked", col), "value", col), dtype=float)
        assert np.isfinite(values[usable]).all(), f"NaN/inf in {name} on a row marked usable"
        assert (np.ma.getmaskarray(col) == ~usable).all(), f"{name} masked differently from ood_score"


@pytest.fixture(scope="module")
def model(mock_table, tiny, one_torch_thread):
    return GalaxyPosterior(random_state=0, **tiny(["redshift", "log_mstar"])).fit(mock_table[:300])


@pytest.fixture(scope="module")
def base(mock_table):
    return Table(mock_table[300:500], copy=True)


def test_predict_on_hostile_tables(model, base):
    @settings(max_examples=60, **SETTINGS)
    @given(table=hostile_tables(base, BANDS + ERRORS + ["z"]),
           n_samples=st.one_of(st.integers(-1, 12), st.floats(-1, 12), st.just("8")),
           percentiles=st.lists(st.floats(-10, 110), max_size=3))
    def check(table, n_samples, percentiles):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = model.predict(table, n_samples=n_samples, percentiles=percentiles, random_state=0)
            except Exception as err:  # noqa: BLE001 - the property is about which exceptions
                assert_named_error(err)
                return
        assert len(out) == len(table)
        predicted = model.output_columns(percentiles)
        assert len(predicted) == 2 * len(percentiles) + 2 > 2  # a summary per target and percentile
        assert_finite_where_usable(out, predicted[:-1])  # ood_flag is boolean

    check()


def test_fit_on_hostile_tables(tiny, mock_table):
    labelled = Table(mock_table[:60], copy=True)
    probe = Table(mock_table[600:620], copy=True)

    @settings(max_examples=6, **SETTINGS)
    @given(table=hostile_tables(labelled, BANDS + ["z", "lgm_tot_p50"]),
           rows=st.integers(0, 48))
    def check(table, rows):
        table = Table(labelled[:rows], copy=True) if len(table) < 2 else table
        options = tiny(["redshift", "log_mstar"], max_epochs=1, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gp = GalaxyPosterior(**options).fit(table)
            except Exception as err:  # noqa: BLE001 - the property is about which exceptions
                assert_named_error(err)
                return
            out = gp.predict(probe, n_samples=8)
        assert_finite_where_usable(out, gp.output_columns()[:-1])

    check()
