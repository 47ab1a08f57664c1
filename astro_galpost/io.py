"""Reading and writing tables safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_table_atomic"]


def write_table_atomic(table, path, overwrite: bool = False, **kwargs) -> Path:
    """Write an astropy table to ``path`` via a temporary file renamed when complete.

    An interrupted run never leaves a half-written file under the final name.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        fmt = kwargs.pop("format", None)
        table.write(tmp, overwrite=True, format=fmt, **kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
