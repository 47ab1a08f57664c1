"""astro_galpost: calibrated posteriors of galaxy properties and emission lines from imaging and photometry.

>>> from astro_galpost import GalaxyPosterior
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astro_galpost")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# The public names are imported on first use (PEP 562), so that ``import astro_galpost.physics``
# or ``astro_galpost.targets`` does not load torch.
_PUBLIC = {
    ".encoders": ("ENCODERS", "Encoder", "PhotometryEncoder", "VAEEncoder", "register_encoder"),
    ".estimator": ("DegenerateLabelsWarning", "GalaxyPosterior", "NotFittedError", "PosteriorSamples",
                   "UnusableRowsWarning"),
    ".flows": ("FLOWS", "register_flow"),
    ".persistence": ("ModelFormatError",),
    ".targets": ("GROUPS", "TARGETS", "Target", "TargetGroup", "register_group", "register_target"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_MODULE_OF[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


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
