"""astro_galpost: calibrated posteriors of galaxy properties and emission lines from imaging and photometry.

>>> from astro_galpost import GalaxyPosterior
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astro_galpost")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .encoders import ENCODERS, Encoder, PhotometryEncoder, VAEEncoder, register_encoder
from .estimator import (
    DegenerateLabelsWarning,
    GalaxyPosterior,
    NotFittedError,
    PosteriorSamples,
    UnusableRowsWarning,
)
from .flows import FLOWS, register_flow
from .persistence import ModelFormatError
from .targets import GROUPS, TARGETS, Target, TargetGroup, register_group, register_target

__all__ = [
    "GalaxyPosterior",
    "PosteriorSamples",
    "NotFittedError",
    "UnusableRowsWarning",
    "DegenerateLabelsWarning",
    "ModelFormatError",
    "TARGETS",
    "Target",
    "register_target",
    "GROUPS",
    "TargetGroup",
    "register_group",
    "ENCODERS",
    "Encoder",
    "PhotometryEncoder",
    "VAEEncoder",
    "register_encoder",
    "FLOWS",
    "register_flow",
    "__version__",
]
