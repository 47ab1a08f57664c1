"""The ``galpost`` command line (all of the package's argparse code lives in this subpackage)."""

from .main import main

__all__ = ["main"]
