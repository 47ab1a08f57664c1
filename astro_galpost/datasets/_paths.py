"""Where the shared real-SDSS files live, for tests, benchmarks and examples."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_data_dir"]

#: Environment variable that overrides the default location of the shared data.
DATA_ENV = "ASTRO_GALPOST_DATA"


def shared_data_dir() -> Path | None:
    """Return the folder of shared real SDSS files, or `None` when absent.

    The folder named by ``$ASTRO_GALPOST_DATA`` wins; otherwise ``../shared/data``
    is looked for beside the current directory and beside the source checkout.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    here = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), here):
        path = root.parent / "shared" / "data"
        if path.is_dir():
            return path
    return None
