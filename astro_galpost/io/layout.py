"""The stored columns of a chunked output (Parquet, HDF5): names, types and astropy's header.

A `TableLayout` is fixed by the first chunk written; every later chunk is
encoded to exactly its columns and types. Mixin columns (Quantity, Masked,
Time...) are stored as plain columns with astropy's public
`~astropy.table.represent_mixins_as_columns` under the format's serialization
context, and the YAML header is astropy's `~astropy.table.meta.get_yaml_from_table`,
so `astropy.table.QTable.read` gives back the units and masks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TableLayout", "string_width"]


def _encode(table, context: str):
    """Mixin columns (Quantity, Masked, Time...) as plain columns, as astropy writes ``context`` files."""
    from astropy.table import represent_mixins_as_columns
    from astropy.utils.data_info import serialize_context_as

    with serialize_context_as(context):
        return represent_mixins_as_columns(table)


def _fully_masked_probe(table):
    """One row of ``table`` with every maskable column masked (fixes which ``.mask`` columns exist)."""
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    probe = table[:1].copy()
    for name in probe.colnames:
        col = probe[name]
        if isinstance(col, MaskedColumn):
            col.mask[:] = True
        elif isinstance(col, Masked):
            col[...] = np.ma.masked
    return probe


def string_width(dtype: np.dtype) -> int:
    """Characters (``U``) or bytes (``S``) per value of a string dtype."""
    return dtype.itemsize // 4 if dtype.kind == "U" else dtype.itemsize


class TableLayout:
    """The stored columns of a chunked output: names, dtypes and astropy's YAML header.

    Built from the first chunk (`from_table`); later chunks are encoded to
    exactly this layout (`encode`). `to_dict` and `from_dict` keep it in a
    writer's checkpoint.

    Parameters
    ----------
    names : list of str
        Stored column names (``<name>.mask`` columns included).
    dtypes : list
        Stored dtype of each: a dtype string, or ``[string, shape]`` for
        multidimensional columns.
    yaml : list of str
        astropy's YAML header lines for the table.
    context : str
        astropy serialization context (``"parquet"``, ``"hdf5"``).
    """

    def __init__(self, names: list[str], dtypes: list, yaml: list[str], context: str):
        # a dtype is a string, or [string, shape] for multidimensional columns
        self.names, self.yaml, self.context = names, yaml, context
        self.dtypes = [np.dtype(d) if isinstance(d, str) else np.dtype((d[0], tuple(d[1]))) for d in dtypes]

    @classmethod
    def from_table(cls, table, context: str, *, bytes_strings: bool = False) -> TableLayout:
        """The layout of ``table``'s stored columns (strings as bytes with ``bytes_strings``)."""
        from astropy.table import meta

        probe = _encode(_fully_masked_probe(table), context)
        full = _encode(table, context)
        if bytes_strings:
            probe.convert_unicode_to_bytestring()
            full = full.copy(copy_data=False)
            full.convert_unicode_to_bytestring()
        dtypes = []
        for name in probe.colnames:
            dt = probe[name].dtype
            if dt.kind in "US" and name in full.colnames:
                width = max(string_width(dt), string_width(full[name].dtype), 1)
                dt = np.dtype(f"{dt.kind}{width}")
            shape = probe[name].shape[1:]
            dtypes.append([dt.str, list(shape)] if shape else dt.str)
        return cls(list(probe.colnames), dtypes, list(meta.get_yaml_from_table(probe)), context)

    def to_dict(self) -> dict:
        """A JSON-able form of the layout (for `from_dict`)."""
        dtypes = [[d.base.str, list(d.shape)] if d.shape else d.str for d in self.dtypes]
        return {"names": self.names, "dtypes": dtypes, "yaml": self.yaml, "context": self.context}

    @classmethod
    def from_dict(cls, d: dict) -> TableLayout:
        """The layout saved by `to_dict`."""
        return cls(list(d["names"]), list(d["dtypes"]), list(d["yaml"]), d["context"])

    def encode(self, table, *, fixed_strings: bool) -> dict[str, np.ndarray]:
        """Stored arrays of ``table`` in this layout."""
        from astropy.table import MaskedColumn

        enc = _encode(table, self.context)
        have = set(enc.colnames)
        out: dict[str, np.ndarray] = {}
        extra = have - set(self.names)
        for name in extra:
            base = name[: -len(".mask")] if name.endswith(".mask") else None
            if base is None or base not in self.names or self.dtypes[self.names.index(base)].kind not in "fc":
                raise ValueError(
                    f"column {name!r} appears in a later chunk but not in the first one; "
                    "every chunk must have the columns of the first")
        for name, dtype in zip(self.names, self.dtypes):
            if name in have:
                col = enc[name]
                if isinstance(col, MaskedColumn):
                    data = col.filled(np.nan) if col.dtype.kind in "fc" else col.filled()
                else:
                    data = np.asarray(col)
                mask_name = f"{name}.mask"
                if mask_name in extra:  # masked floats the first chunk did not mask: NaN
                    data = np.where(np.asarray(enc[mask_name]), np.nan, data)
                out[name] = self._cast(name, data, dtype, fixed_strings)
            elif name.endswith(".mask") and name[: -len(".mask")] in have:
                out[name] = np.zeros(len(enc), bool)
            else:
                raise ValueError(f"column {name!r} of the first chunk is missing from a later chunk")
        return out

    @staticmethod
    def _cast(name: str, data: np.ndarray, dtype: np.dtype, fixed_strings: bool) -> np.ndarray:
        if dtype.kind in "US":
            if data.dtype.kind == "U" and dtype.kind == "S":
                data = np.char.encode(data, "utf-8")
            elif data.dtype.kind == "S" and dtype.kind == "U":
                data = np.char.decode(data, "utf-8")
            if fixed_strings and data.dtype.kind in "US" and string_width(data.dtype) > string_width(dtype):
                longest = int(np.char.str_len(data).max()) if len(data) else 0
                if longest > string_width(dtype):
                    raise ValueError(
                        f"string column {name!r} has values of {longest} characters in a later chunk but "
                        f"the output stores {string_width(dtype)} (the first chunk's width); write Parquet, CSV "
                        "or ECSV, or leave the column out")
            return data.astype(dtype) if fixed_strings else data
        if data.shape[1:] != dtype.shape:
            raise ValueError(f"column {name!r} has shape {data.shape[1:]} per row in a later chunk but "
                             f"{dtype.shape} in the first")
        if data.dtype == dtype.base:
            return data
        if not np.can_cast(data.dtype, dtype.base, casting="same_kind"):
            if data.dtype.kind == "f" and dtype.kind in "iub" and np.isnan(data).any():
                raise ValueError(
                    f"column {name!r} is {dtype} in the first chunk but has missing values (NaN) later; "
                    "CSV input cannot carry masked integers: convert the catalog to Parquet or FITS, "
                    "or leave the column out")
            if not (data.dtype.kind in "iub" and dtype.kind in "fiu"):
                raise ValueError(f"column {name!r} is {data.dtype} in a later chunk but {dtype} in the first")
        if data.dtype.kind in "iu" and dtype.kind in "iu" and len(data):
            info = np.iinfo(dtype.base)
            if int(data.min()) < info.min or int(data.max()) > info.max:  # astype would wrap (IDs > 2**63)
                raise ValueError(f"column {name!r} is {dtype} in the first chunk but holds {int(data.max())} or "
                                 f"{int(data.min())} in a later one, outside its range")
        return data.astype(dtype.base)
