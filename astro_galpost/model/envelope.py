"""The one on-disk envelope of the package: a folder with a JSON config and safetensors weights.

A saved model or encoder is a folder holding ``config.json`` (what the
folder holds, the package and torch versions, the format version and the
SHA-256 checksums of the config and of the weights) and
``weights.safetensors`` (named arrays). No code is pickled. The folder is
written atomically through `astro_galpost.utils.atomic.replace_folder`;
reading verifies both checksums and that every weight is finite.

This module knows nothing of the estimator or of the encoder registry: the
estimator (`astro_galpost.GalaxyPosterior.save`) and the encoders
(`save_encoder`, `load_encoder`) put their own config and arrays in it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..utils.atomic import replace_folder

__all__ = [
    "FORMAT_VERSION", "CONFIG", "WEIGHTS", "ModelFormatError", "file_sha256", "config_checksum",
    "is_model_folder", "envelope_header", "write_model_folder", "read_model_folder", "jsonable",
    "restore_generator", "save_encoder", "load_encoder",
]

#: Version of the on-disk layout; bumped when it changes incompatibly.
FORMAT_VERSION = 4
#: File names inside a saved folder.
CONFIG, WEIGHTS = "config.json", "weights.safetensors"


class ModelFormatError(ValueError):
    """A saved model is corrupted, incomplete or from an incompatible version."""


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, tuples, arrays and pandas sequences as lists and
    torch devices as strings, ready for `json.dumps`.

    A `~numpy.random.Generator` becomes its bit generator's exact state (see
    `restore_generator`), so sampling after loading continues as it would have;
    a `~numpy.random.SeedSequence` becomes its entropy and spawn key.
    """
    if isinstance(value, np.random.Generator):
        bits = value.bit_generator
        return {"generator": type(bits).__name__, "state": bits.state}
    if isinstance(value, np.random.SeedSequence):
        return {"seed_sequence": jsonable(value.entropy), "spawn_key": list(value.spawn_key)}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (list, tuple, np.ndarray)) or type(value).__module__.startswith("pandas"):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def restore_generator(value: Any) -> Any:
    """Inverse of `jsonable` for a saved `~numpy.random.Generator` or `~numpy.random.SeedSequence`
    (other values are returned unchanged)."""
    if isinstance(value, dict) and set(value) == {"seed_sequence", "spawn_key"}:
        return np.random.SeedSequence(value["seed_sequence"], spawn_key=tuple(value["spawn_key"]))
    if not (isinstance(value, dict) and set(value) == {"generator", "state"}):
        return value
    bits = getattr(np.random, str(value["generator"]), None)
    if not (isinstance(bits, type) and issubclass(bits, np.random.BitGenerator)):
        raise ModelFormatError(f"unknown bit generator {value['generator']!r} in the saved random_state")
    bit_generator = bits()
    bit_generator.state = value["state"]
    return np.random.Generator(bit_generator)


def config_checksum(config: dict) -> str:
    """SHA-256 of a model's config (without its own ``config_sha256`` entry) as compact JSON, keys in order."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    # key order matters (targets are ordered), so no sort_keys: the config went through JSON once already
    return hashlib.sha256(json.dumps(body, allow_nan=True).encode()).hexdigest()


def is_model_folder(path) -> bool:
    """Whether ``path`` is a folder written by `write_model_folder`: its marker config."""
    try:
        config = json.loads((Path(path) / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("package") == "astro_galpost" and "format_version" in config


def envelope_header(**extra: Any) -> dict:
    """The entries every saved config starts with: format, package and torch versions, then ``extra``."""
    from .. import __version__

    return {
        "format_version": FORMAT_VERSION,
        "package": "astro_galpost",
        "package_version": __version__,
        "torch_version": torch.__version__,
        **extra,
    }


def write_model_folder(path, tensors: dict[str, torch.Tensor], config: dict, overwrite: bool = False) -> Path:
    """Write ``weights.safetensors`` and ``config.json`` (with both checksums) atomically to ``path``.

    Only a folder `is_model_folder` recognises, holding nothing but those two
    files, is ever replaced (see `astro_galpost.utils.atomic.replace_folder`).
    """
    with replace_folder(path, overwrite=overwrite, is_ours=is_model_folder, allowed=(CONFIG, WEIGHTS)) as tmp:
        save_file(tensors, tmp / WEIGHTS, metadata={"format_version": str(FORMAT_VERSION)})
        # through JSON once, so the checksum is that of exactly what is read back
        config = json.loads(json.dumps({**config, "weights_sha256": file_sha256(tmp / WEIGHTS)}))
        config["config_sha256"] = config_checksum(config)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    return Path(path)


def _read_config(path: Path, what: str) -> dict:
    """The folder's config, checked to be this package's, in a readable format, matching its checksum."""
    try:
        config = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFormatError(f"{path / CONFIG} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("package") != "astro_galpost" or "format_version" not in config:
        raise ModelFormatError(f"{path} is not an astro_galpost {what}")
    if not isinstance(config["format_version"], int) or config["format_version"] > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} was saved in format {config['format_version']} by astro_galpost "
            f"{config.get('package_version')}; this version reads format {FORMAT_VERSION} and older: upgrade"
        )
    if config["format_version"] >= 2 and config.get("config_sha256") != config_checksum(config):
        raise ModelFormatError(f"{path / CONFIG} does not match its checksum: the file is corrupted or was modified")
    return config


def read_model_folder(path, what: str = "model") -> tuple[dict, dict[str, torch.Tensor]]:
    """The verified config and tensors of a folder written by `write_model_folder`.

    Checks that both files exist, that the config is JSON from this package in
    a readable format version, that the config and the weights match their
    SHA-256 checksums, and that every floating-point weight is finite.

    Raises
    ------
    FileNotFoundError
        ``path`` or one of its files is missing.
    ModelFormatError
        Any check fails.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no saved {what} at {path} (expected a folder with {CONFIG} and {WEIGHTS})")
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"saved {what} {path} is incomplete: {name} is missing")
    config = _read_config(path, what)
    if file_sha256(path / WEIGHTS) != config.get("weights_sha256"):
        raise ModelFormatError(f"{path / WEIGHTS} does not match its checksum: the file is corrupted or was modified")
    try:
        tensors = load_file(path / WEIGHTS, device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises several types
        raise ModelFormatError(f"cannot read {path / WEIGHTS}: {err}") from err
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFormatError(f"{path / WEIGHTS} holds non-finite values (NaN or inf) in {bad[:5]}")
    return config, tensors


def save_encoder(encoder, path, overwrite: bool = False) -> Path:
    """Write a fitted `~astro_galpost.encoders.Encoder` on its own to the folder ``path``.

    Its ``get_arrays()`` become the weights and its ``get_config()`` (made
    JSON-ready by `jsonable`) the config, under ``{"kind": "encoder"}``.
    """
    tensors = {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in encoder.get_arrays().items()}
    config = envelope_header(kind="encoder", encoder={"name": encoder.name, "config": jsonable(encoder.get_config())})
    return write_model_folder(path, tensors, config, overwrite=overwrite)


def load_encoder(path, cls: type):
    """Rebuild an encoder of class ``cls`` from a folder written by `save_encoder`.

    Raises
    ------
    ModelFormatError
        The folder holds no encoder, an encoder of another name than
        ``cls.name``, or one that ``cls.from_config`` cannot rebuild.
    """
    path = Path(path)
    config, tensors = read_model_folder(path, "encoder")
    if config.get("kind") != "encoder":
        raise ModelFormatError(f"{path} is not a saved astro_galpost encoder")
    spec = config["encoder"]
    if spec["name"] != cls.name:
        raise ModelFormatError(f"{path} holds a {spec['name']!r} encoder, not a {cls.name!r} one")
    try:
        return cls.from_config(spec["config"], {k: v.numpy() for k, v in tensors.items()})
    except (KeyError, RuntimeError) as err:
        raise ModelFormatError(f"the encoder saved in {path} cannot be rebuilt: {err}") from err
