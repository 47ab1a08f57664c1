"""astro_galpost: calibrated posteriors of galaxy properties and emission lines from imaging and photometry.

>>> from astro_galpost import GalaxyPosterior
"""

from importlib.metadata import PackageNotFoundError, version

from .utils.lazy import lazy_exports

try:
    __version__ = version("astro_galpost")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# The public names are imported on first use (PEP 562), so that ``import astro_galpost.physics``
# or ``astro_galpost.model.targets`` does not load torch.
_PUBLIC = {
    ".encoders": ("ENCODERS", "Encoder", "PhotometryEncoder", "VAEEncoder", "register_encoder"),
    ".model.estimator": ("DegenerateLabelsWarning", "GalaxyPosterior", "NotFittedError", "PosteriorSamples",
                   "UnusableRowsWarning"),
    ".model.flows": ("FLOWS", "register_flow"),
    ".model.persistence": ("ModelFormatError",),
    ".model.targets": ("GROUPS", "TARGETS", "Target", "TargetGroup", "register_group", "register_target"),
}
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)


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
