"""The layout of a saved `~astro_galpost.GalaxyPosterior`'s config, checked before anything is rebuilt.

`~astro_galpost.GalaxyPosterior.load` reads a folder written by
`astro_galpost.model.envelope` and calls `check_layout` on its config: the
format version (older formats are refused with what changed), registered
targets, one finite scaling per target, groups that cover every target, and
each target's modelled space as this installation defines it (`target_space`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .envelope import CONFIG, FORMAT_VERSION, ModelFormatError
from .targets import TARGETS

__all__ = ["check_layout", "target_space"]


def target_space(name: str) -> dict:
    """The modelled space of registered target ``name`` as saved with a model: ``{space, softening}``."""
    target = TARGETS[name]
    return {"space": target.space, "softening": target.softening if target.space == "asinh" else None}


def check_layout(config: dict, path: Path) -> None:
    """Raise `ModelFormatError` unless a saved config is format 4+ and its parts agree with each other and the registries."""
    if config["format_version"] < 4:
        change = ("whose classifiers read the representation alone and whose groups were not chained as now"
                  if config["format_version"] < 3 else
                  "whose recalibrated widths act about the mean head, not about the flow's centre as now")
        raise ModelFormatError(
            f"{path} was saved in format {config['format_version']} by astro_galpost "
            f"{config.get('package_version')}, {change} (format {FORMAT_VERSION}): refit the model")
    try:
        targets = dict(config["targets"])
        n = len(targets)
        unknown = [name for name in targets if name not in TARGETS]
        if unknown:
            raise ModelFormatError(f"{path} models targets {unknown} that are not registered")
        for key in ("label_mean", "label_scale"):
            values = np.asarray(config[key], dtype=float)
            if values.shape != (n,) or not np.isfinite(values).all():
                raise ModelFormatError(f"{path}: {key} must hold {n} finite values (one per target), "
                                       f"got {config[key]!r}")
        covered = sorted(i for g in config["groups"] for i in g["targets"])
        if covered != list(range(n)):
            raise ModelFormatError(f"{path}: the groups cover target indices {covered}, not 0..{n - 1}")
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ModelFormatError):
            raise
        raise ModelFormatError(f"{path / CONFIG} is incomplete or malformed: {err!r}") from err
    for name, saved in config.get("target_spaces", {}).items():
        if name in TARGETS and target_space(name) != saved:
            raise ModelFormatError(f"{path} modelled target {name!r} in space {saved}, but this installation "
                                   f"defines it as {target_space(name)}: refit the model")
