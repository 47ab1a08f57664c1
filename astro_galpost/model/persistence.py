"""Saving and loading fitted models: a JSON config plus safetensors weights, no pickled code.

A saved model is a folder holding ``config.json`` (estimator parameters, fitted
scalings, target and group layout, encoder configs, package version and the
SHA-256 of the weights) and ``weights.safetensors`` (every network's state dict
and every encoder's arrays). Loading verifies the checksum and rebuilds the
networks from registered encoders and flows, always onto the requested device.

The folder format itself (checksums, format version, atomic writes) is
``astro_galpost.model.envelope``, whose names are re-exported here; the
estimator's own entries are written by `~astro_galpost.GalaxyPosterior.save`
and read by `~astro_galpost.GalaxyPosterior.load`. `save_model` and
`load_model` are the same as those two methods. This module sits above the
estimator in the import graph (the estimator and the encoders import the
envelope, never this module), so no import cycle runs through it.
"""

from __future__ import annotations

from pathlib import Path

from .envelope import (
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    ModelFormatError,
    config_checksum,
    envelope_header,
    file_sha256,
    is_model_folder,
    jsonable,
    load_encoder,
    read_model_folder,
    restore_generator,
    save_encoder,
    write_model_folder,
)

__all__ = [
    "save_model", "load_model", "ModelFormatError", "FORMAT_VERSION", "CONFIG", "WEIGHTS", "is_model_folder",
    "write_model_folder", "read_model_folder", "config_checksum", "envelope_header", "file_sha256", "jsonable",
    "restore_generator", "save_encoder", "load_encoder",
]


def save_model(model, path, overwrite: bool = False) -> Path:
    """Write a fitted `~astro_galpost.GalaxyPosterior` to the folder ``path``; see its `save`.

    Returns
    -------
    `~pathlib.Path`
        ``path``.
    """
    model.save(path, overwrite=overwrite)
    return Path(path)


def load_model(path, device: str = "cpu"):
    """Read a model written by `save_model` onto ``device``: `~astro_galpost.GalaxyPosterior.load`.

    It raises what that method raises: `FileNotFoundError` for a missing folder
    or file, `ModelFormatError` for a corrupted or incompatible one.
    """
    from .estimator import GalaxyPosterior

    return GalaxyPosterior.load(path, device=device)
