"""The model: targets, flows, the posterior network, its training, sampling, recalibration and files.

================  ==============================================================
module            what it holds
================  ==============================================================
``targets``       `Target`, `TargetGroup` and their registries (what is predicted)
``flows``         the conditional flow factories (``realnvp``, ``affine1d``, ``nsf``)
``network``       `PosteriorNetwork`: representation MLP, mean MLPs and flows
``training``      the one training loop (`train_network`)
``sampling``      fast sampling of coupling flows
``recalibration`` per-target shift and width fitted on held-out rows
``envelope``      the model-folder format (safetensors + JSON), its version and checksums
``persistence``   saving and loading a `GalaxyPosterior` in that folder
``ood``           `NeighbourDistance`, the out-of-distribution score
``estimator``     `GalaxyPosterior`, the user-facing estimator
================  ==============================================================

Names are imported on first use, so ``from astro_galpost.model import Target`` loads no torch.
"""

from ..utils.lazy import lazy_exports

_PUBLIC = {
    ".estimator": ("GalaxyPosterior", "PosteriorSamples", "NotFittedError", "UnusableRowsWarning",
                   "DegenerateLabelsWarning"),
    ".targets": ("Target", "TARGETS", "register_target", "TargetGroup", "GROUPS", "register_group",
                 "group_order", "LINE_FLUX_UNIT"),
    ".flows": ("FLOWS", "register_flow", "build_flow"),
    ".persistence": ("save_model", "load_model", "ModelFormatError", "FORMAT_VERSION"),
    ".network": ("PosteriorNetwork",),
    ".training": ("TrainingHistory", "train_network", "fit_module"),
    ".ood": ("NeighbourDistance",),
}
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
__all__ = [name for names in _PUBLIC.values() for name in names]
