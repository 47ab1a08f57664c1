"""The SkyServer (CAS) SQL of the seed paper's SDSS Main Galaxy Sample.

:func:`build_query` writes the query: SpecObj joined with PhotoObj and the
MPA-JHU tables, ordered by a key so that it can be fetched page by page
(keyset paging, see :func:`astro_galpost.sdss.fetch_catalog`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = [
    "BANDS",
    "DEFAULT_COLUMNS",
    "MGS_TARGET_BITS",
    "PAGE_KEYS",
    "Z_MIN",
    "build_query",
    "check_count",
    "compact_sql",
]

#: SDSS photometric bands, blue to red.
BANDS = "ugriz"

#: ``legacy_target1`` bits of the Main Galaxy Sample: GALAXY (bit 6),
#: GALAXY_BIG (bit 7) and GALAXY_BRIGHT_CORE (bit 8), as documented for the
#: SDSS spectroscopic target flags (Strauss et al. 2002).
MGS_TARGET_BITS = 64 | 128 | 256

#: Spectroscopic emission lines (galSpecLine prefixes) fetched by default: the
#: four lines the seed paper models.
_DEFAULT_LINES = ("h_alpha", "h_beta", "nii_6584", "oiii_5007")

#: Columns selected by :func:`build_query`, as ``<table alias>.<CAS column>``.
#: Aliases: ``s`` SpecObj, ``p`` PhotoObj, ``i`` galSpecInfo, ``e`` galSpecExtra,
#: ``l`` galSpecLine. A qualified column keeps its CAS name in the result; the
#: position and redshift are named explicitly because CAS reuses those names
#: across tables: ``z`` is the redshift in SpecObj but the z-band magnitude in
#: PhotoObj, and ``ra``/``dec`` exist in all of them. (Short select items keep
#: the URL of SkyServer's GET interface well below 2 kB.)
DEFAULT_COLUMNS: tuple[str, ...] = (
    "p.objID",
    "s.specObjID",
    "p.ra AS ra",
    "p.dec AS dec",
    "s.z AS z",
    "s.zErr",
    "s.plate",
    "s.mjd",
    "s.fiberID",
    "s.velDisp",
    "s.velDispErr",
    "i.v_disp",
    "i.v_disp_err",
    "i.sn_median",
    *(f"p.modelMag_{b}" for b in BANDS),
    *(f"p.modelMagErr_{b}" for b in BANDS),
    *(f"p.extinction_{b}" for b in BANDS),
    *(f"p.fiberMag_{b}" for b in BANDS),
    "p.petroMag_r",
    "p.petroR50_r",
    "p.petroR90_r",
    "e.lgm_tot_p50",
    "e.sfr_tot_p50",
    "e.oh_p50",
    "e.bptclass",
    "i.reliable",
    *(f"l.{line}_{suffix}" for line in _DEFAULT_LINES for suffix in ("flux", "flux_err")),
)

#: Default lower redshift limit of :func:`build_query`: below it peculiar
#: velocities (~300 km/s, i.e. z ~ 0.001) are 10% or more of the Hubble flow.
Z_MIN = 0.01

#: Columns the rows can be ordered and paged by, with their qualified CAS name.
PAGE_KEYS = {"specObjID": "s.specObjID", "objID": "p.objID"}

_FROM = (
    "FROM SpecObj AS s",
    "    JOIN PhotoObj AS p ON p.objID = s.bestObjID",
    "    JOIN galSpecInfo AS i ON i.specObjID = s.specObjID",
    "    JOIN galSpecExtra AS e ON e.specObjID = s.specObjID",
    "    JOIN galSpecLine AS l ON l.specObjID = s.specObjID",
)


def _select_alias(expr: str) -> str:
    """Output name of a select-list expression (``... AS name`` or ``t.name``)."""
    match = re.search(r"\bAS\s+\[?(\w+)\]?\s*$", expr, flags=re.IGNORECASE)
    if match:
        return match.group(1)
    return expr.strip().split(".")[-1].strip("[] ")


def check_count(value: int | None, name: str) -> int | None:
    """``value`` as an int if it is a positive whole number (`None` passes); else `ValueError` naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def compact_sql(sql: str) -> str:
    """Collapse whitespace outside string literals.

    SkyServer's SQL search is a GET request, and web servers cap the length of
    a query string (IIS: 2 kB by default).
    """
    parts = sql.split("'")
    parts[::2] = [re.sub(r"\s+", " ", part) for part in parts[::2]]
    return "'".join(parts).strip()


def _limit(n: int | None, top: int | None) -> int | None:
    n = check_count(n, "n")
    top = check_count(top, "top")
    if n is not None and top is not None and n != top:
        raise ValueError(f"n={n} and top={top} disagree: give only one of them")
    return n if n is not None else top


def _check_ranges(z_min: float, z_max: float, r_max: float | None) -> None:
    for name, value in (("z_min", z_min), ("z_max", z_max)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not float(z_min) < float(z_max):
        raise ValueError(f"z_min ({z_min}) must be below z_max ({z_max})")
    if r_max is not None and not math.isfinite(float(r_max)):
        raise ValueError(f"r_max must be finite or None, got {r_max!r}")


def _select_list(columns: Sequence[str] | None, extra_columns: Sequence[str], page_key: str) -> list[str]:
    """The select expressions, checked, with the paging key first if it is missing."""
    select = list(DEFAULT_COLUMNS if columns is None else columns) + list(extra_columns)
    if not select:
        raise ValueError("no columns to select")
    for expr in select:
        # select expressions are pasted into SQL: refuse statement separators
        if ";" in expr or "--" in expr:
            raise ValueError(f"invalid select expression {expr!r}")
    aliases = [_select_alias(expr) for expr in select]
    duplicates = sorted({a for a in aliases if aliases.count(a) > 1})
    if duplicates:
        raise ValueError(f"duplicate output column name(s): {', '.join(duplicates)}")
    if page_key not in aliases:
        select.insert(0, PAGE_KEYS[page_key])
    return select


def _where(z_min: float, z_max: float, r_max: float | None, target_bits: int | None, dereddened: bool,
           reliable_only: bool, after: int | None, key_expr: str) -> list[str]:
    """The conditions of the WHERE clause."""
    where = ["s.class = 'GALAXY'", "s.zWarning = 0",
             f"s.z > {float(z_min)!r}", f"s.z <= {float(z_max)!r}"]
    if target_bits is not None:
        bits = int(target_bits)
        if bits <= 0:
            raise ValueError(f"target_bits must be a positive bit mask, got {target_bits!r}")
        spelled = " | ".join(str(1 << k) for k in range(bits.bit_length()) if bits >> k & 1)
        where.append(f"(s.legacy_target1 & ({spelled})) > 0")
    if r_max is not None:
        mag = "p.petroMag_r - p.extinction_r" if dereddened else "p.petroMag_r"
        where.append(f"{mag} < {float(r_max)!r}")
    if reliable_only:
        where.append("i.reliable = 1")
    if after is not None:
        if isinstance(after, bool) or int(after) != after or int(after) < 0:
            raise ValueError(f"after must be a non-negative integer key, got {after!r}")
        where.append(f"{key_expr} > {int(after)}")
    return where


def build_query(
    n: int | None = None,
    *,
    z_min: float = Z_MIN,
    z_max: float = 0.3,
    r_max: float | None = 17.77,
    top: int | None = None,
    after: int | None = None,
    page_key: str = "specObjID",
    columns: Sequence[str] | None = None,
    extra_columns: Sequence[str] = (),
    target_bits: int | None = MGS_TARGET_BITS,
    dereddened: bool = True,
    reliable_only: bool = True,
) -> str:
    """SkyServer SQL selecting the seed paper's SDSS Main Galaxy Sample.

    SpecObj (science-primary spectra) is joined with PhotoObj on
    ``bestObjID = objID`` and with the MPA-JHU tables galSpecInfo, galSpecExtra
    and galSpecLine on ``specObjID``. Rows are ordered by ``page_key`` so that
    pages can be fetched by *keyset paging*: each page asks for the rows whose
    key is greater than the last key of the previous page (``after``), which
    SkyServer answers quickly from its index, unlike ``OFFSET``.

    Parameters
    ----------
    n, top : int, optional
        Maximum number of rows (SQL ``TOP``); ``top`` is a synonym of ``n``.
        `None` selects every matching row.
    z_min, z_max : float, optional
        Redshift range ``z_min < z <= z_max`` (default ``0.01 < z <= 0.3``,
        :data:`Z_MIN`: below ``z ~ 0.01`` peculiar velocities of a few hundred
        km/s make the redshift a poor distance). Pass ``z_min=0`` to drop it.
    r_max : float or None, optional
        Petrosian r-band limit of the Main Galaxy Sample (17.77). `None` drops
        the cut (the target bits alone still select the MGS).
    after : int, optional
        Only rows whose ``page_key`` is greater than this value (keyset paging).
    page_key : {"specObjID", "objID"}, optional
        Column the rows are ordered and paged by. ``specObjID`` (default) is the
        primary key of the joined result, so keyset paging on it can neither skip
        nor repeat a row; ``objID`` is unique only while no two science-primary
        spectra share a photometric object.
    columns : sequence of str, optional
        Select-list expressions replacing :data:`DEFAULT_COLUMNS` (e.g.
        ``"p.petroMag_g AS petroMag_g"``). The paging key is added if missing.
    extra_columns : sequence of str, optional
        Expressions appended to the select list.
    target_bits : int or None, optional
        Required ``legacy_target1`` bits (any of them), default
        :data:`MGS_TARGET_BITS`; `None` drops the target cut.
    dereddened : bool, optional
        Apply ``r_max`` to the extinction-corrected Petrosian magnitude
        ``petroMag_r - extinction_r``, as the MGS target selection did (Strauss
        et al. 2002); `False` cuts on ``petroMag_r``.
    reliable_only : bool, optional
        Keep only rows with galSpecInfo ``reliable = 1`` (default). `False`
        keeps them all; the flag is selected either way, so it can be applied later.

    Returns
    -------
    sql : str

    Raises
    ------
    ValueError
        For inconsistent or invalid options.

    Examples
    --------
    >>> from astro_galpost.sdss import build_query
    >>> sql = build_query(1000, after=1234)
    >>> print(sql.splitlines()[0])
    SELECT TOP 1000
    >>> "AND s.specObjID > 1234" in sql
    True
    """
    limit = _limit(n, top)
    if page_key not in PAGE_KEYS:
        raise ValueError(f"page_key must be one of {sorted(PAGE_KEYS)}, got {page_key!r}")
    _check_ranges(z_min, z_max, r_max)
    select = _select_list(columns, extra_columns, page_key)
    key_expr = PAGE_KEYS[page_key]
    where = _where(z_min, z_max, r_max, target_bits, dereddened, reliable_only, after, key_expr)
    lines = ["SELECT TOP " + str(limit) if limit is not None else "SELECT"]
    lines.append(",\n".join("    " + expr for expr in select))
    lines += [*_FROM, "WHERE " + "\n    AND ".join(where), f"ORDER BY {key_expr}"]
    return "\n".join(lines)
