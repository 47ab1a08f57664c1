"""Saving and loading fitted models: a JSON config plus safetensors weights, no pickled code.

A saved model is a folder holding ``config.json`` (estimator parameters, fitted
scalings, target and group layout, encoder configs, package version and the
SHA-256 of the weights) and ``weights.safetensors`` (every network's state dict
and every encoder's arrays). Loading verifies the checksum and rebuilds the
networks from registered encoders and flows, always onto the requested device.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..utils.atomic import replace_folder
from ..encoders import ENCODERS
from .network import GroupSpec
from .ood import NeighbourDistance
from .targets import TARGETS

__all__ = [
    "save_model", "load_model", "ModelFormatError", "FORMAT_VERSION", "is_model_folder",
    "write_model_folder", "read_model_folder", "config_checksum",
]

#: Version of the on-disk layout; bumped when it changes incompatibly.
FORMAT_VERSION = 3
CONFIG, WEIGHTS = "config.json", "weights.safetensors"


class ModelFormatError(ValueError):
    """A saved model is corrupted, incomplete or from an incompatible version."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value):
    if isinstance(value, np.random.Generator):
        # the generator's exact state, so sampling after `load` continues as it would have
        bits = value.bit_generator
        return {"generator": type(bits).__name__, "state": bits.state}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _generator(value):
    """Inverse of `_jsonable` for a saved `~numpy.random.Generator` (other values unchanged)."""
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
    """Whether ``path`` is a folder written by `save_model` (or an encoder's ``save``): its marker config."""
    try:
        config = json.loads((Path(path) / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("package") == "astro_galpost" and "format_version" in config


def write_model_folder(path, tensors: dict[str, torch.Tensor], config: dict, overwrite: bool = False) -> Path:
    """Write ``weights.safetensors`` and ``config.json`` (with both checksums) atomically to ``path``.

    Only a folder `is_model_folder` recognises, holding nothing but those two
    files, is ever replaced (see `astro_galpost.utils.atomic.replace_folder`).
    """
    with replace_folder(path, overwrite=overwrite, is_ours=is_model_folder, allowed=(CONFIG, WEIGHTS)) as tmp:
        save_file(tensors, tmp / WEIGHTS, metadata={"format_version": str(FORMAT_VERSION)})
        # through JSON once, so the checksum is that of exactly what is read back
        config = json.loads(json.dumps({**config, "weights_sha256": _sha256(tmp / WEIGHTS)}))
        config["config_sha256"] = config_checksum(config)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    return Path(path)


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
    if _sha256(path / WEIGHTS) != config.get("weights_sha256"):
        raise ModelFormatError(f"{path / WEIGHTS} does not match its checksum: the file is corrupted or was modified")
    try:
        tensors = load_file(path / WEIGHTS, device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises several types
        raise ModelFormatError(f"cannot read {path / WEIGHTS}: {err}") from err
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFormatError(f"{path / WEIGHTS} holds non-finite values (NaN or inf) in {bad[:5]}")
    return config, tensors


def save_model(model, path, overwrite: bool = False) -> Path:
    """Write a fitted `~astro_galpost.GalaxyPosterior` to the folder ``path``.

    The folder is written under a temporary name, synced, and swapped in when
    complete (`astro_galpost.utils.atomic.replace_folder`), so an interrupted save
    leaves the old or the new model under ``path``, never none or half of one.
    With ``overwrite=True`` only a folder holding a saved model (and nothing
    else) is replaced; any other folder raises `~astro_galpost.utils.atomic.NotOurFolderError`
    (a `FileExistsError`), and nothing is deleted.
    """
    from .. import __version__

    tensors: dict[str, torch.Tensor] = {}
    for k, net in enumerate(model.networks_):
        for name, value in net.state_dict().items():
            tensors[f"network{k}.{name}"] = value.detach().to("cpu").contiguous()
    encoders = []
    for i, enc in enumerate(model.encoders_):
        for name, value in enc.get_arrays().items():
            tensors[f"encoder{i}.{name}"] = torch.as_tensor(np.ascontiguousarray(value))
        encoders.append({"name": enc.name, "config": _jsonable(enc.get_config())})

    for name, value in model.ood_.get_arrays().items():
        tensors[f"ood.{name}"] = torch.as_tensor(np.ascontiguousarray(value))

    params = model.get_params(deep=False)
    params["encoder"] = [e["name"] for e in encoders]
    params = {k: _jsonable(v) for k, v in params.items()}
    config = {
        "format_version": FORMAT_VERSION,
        "package": "astro_galpost",
        "package_version": __version__,
        "torch_version": torch.__version__,
        "params": params,
        "targets": model.targets_,
        # the spaces the labels were modelled in: a registry change must not silently reinterpret weights
        "target_spaces": {name: _target_space(name) for name in model.targets_},
        "groups": [g.to_dict() for g in model.groups_],
        "flows": model.flows_,
        "encoders": encoders,
        "ood": model.ood_.get_config(),
        "n_features_in": model.n_features_in_,
        "n_train": model.n_train_,
        "label_mean": model.label_mean_.tolist(),
        "label_scale": model.label_scale_.tolist(),
        "history": [h.to_dict() for h in model.history_],
    }

    return write_model_folder(path, tensors, config, overwrite=overwrite)


def _target_space(name: str) -> dict:
    target = TARGETS[name]
    return {"space": target.space, "softening": target.softening if target.space == "asinh" else None}


def _check_layout(config: dict, path: Path) -> None:
    """The config's parts agree: targets are registered, scalings and groups cover every target."""
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


def load_model(path, device: str = "cpu"):
    """Read a model written by `save_model`; see `~astro_galpost.GalaxyPosterior.load`.

    Raises
    ------
    FileNotFoundError
        When ``path`` or one of its files is missing.
    ModelFormatError
        When the files are corrupted or from an incompatible format version.
    """
    from .estimator import GalaxyPosterior
    from .training import TrainingHistory

    path = Path(path)
    config, tensors = read_model_folder(path, "model")
    if config["format_version"] < 3:
        raise ModelFormatError(
            f"{path} was saved in format {config['format_version']} by astro_galpost "
            f"{config.get('package_version')}, whose classifiers read the representation alone and whose "
            "groups were not chained as now (format 3): refit the model"
        )
    _check_layout(config, path)

    for name, saved in config.get("target_spaces", {}).items():
        if name in TARGETS and _target_space(name) != saved:
            raise ModelFormatError(
                f"{path} modelled target {name!r} in space {saved}, but this installation defines it as "
                f"{_target_space(name)}: refit the model"
            )

    params = dict(config["params"])
    params["random_state"] = _generator(params.get("random_state"))
    model = GalaxyPosterior(**{**params, "device": device})
    model.targets_ = dict(config["targets"])
    model.groups_ = [GroupSpec(**g) for g in config["groups"]]
    model.flows_ = dict(config["flows"])
    model.n_features_in_ = int(config["n_features_in"])
    model.n_train_ = int(config["n_train"])
    model.label_mean_ = np.asarray(config["label_mean"], dtype=float)
    model.label_scale_ = np.asarray(config["label_scale"], dtype=float)
    model.history_ = [TrainingHistory(**h) for h in config["history"]]

    model.encoders_ = []
    for i, spec in enumerate(config["encoders"]):
        prefix = f"encoder{i}."
        arrays = {k[len(prefix):]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        model.encoders_.append(ENCODERS.get(spec["name"]).from_config(spec["config"], arrays))

    model.ood_ = NeighbourDistance.from_config(
        config["ood"], {k[len("ood."):]: v.numpy() for k, v in tensors.items() if k.startswith("ood.")}
    )

    model.networks_ = []
    for k in range(len(config["history"])):
        prefix = f"network{k}."
        state = {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}
        net = model._build_network()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFormatError(f"weights in {path} do not fit the saved architecture: {err}") from err
        net.to(device).eval()
        model.networks_.append(net)
    return model
