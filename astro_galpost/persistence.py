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
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .encoders import ENCODERS
from .network import GroupSpec
from .ood import NeighbourDistance
from .targets import TARGETS

__all__ = ["save_model", "load_model", "ModelFormatError", "FORMAT_VERSION"]

#: Version of the on-disk layout; bumped when it changes incompatibly.
FORMAT_VERSION = 2
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
        return None
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def save_model(model, path, overwrite: bool = False) -> Path:
    """Write a fitted `~astro_galpost.GalaxyPosterior` to the folder ``path``.

    The folder is written under a temporary name and renamed when complete, so
    an interrupted save never leaves a half-written model under ``path``.
    """
    from . import __version__

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
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

    params = model.get_params()
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

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(tensors, tmp / WEIGHTS, metadata={"format_version": str(FORMAT_VERSION)})
        config["weights_sha256"] = _sha256(tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _target_space(name: str) -> dict:
    target = TARGETS[name]
    return {"space": target.space, "softening": target.softening if target.space == "asinh" else None}


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
    if not path.is_dir():
        raise FileNotFoundError(f"no saved model at {path} (expected a folder with {CONFIG} and {WEIGHTS})")
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"saved model {path} is incomplete: {name} is missing")
    try:
        config = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFormatError(f"{path / CONFIG} is not valid JSON: {err}") from err
    if config.get("package") != "astro_galpost" or "format_version" not in config:
        raise ModelFormatError(f"{path} is not an astro_galpost model")
    if config["format_version"] > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} was saved in format {config['format_version']} by astro_galpost "
            f"{config.get('package_version')}; this version reads format {FORMAT_VERSION} and older: upgrade"
        )
    if config["format_version"] < 2:
        raise ModelFormatError(
            f"{path} was saved in format {config['format_version']} by astro_galpost "
            f"{config.get('package_version')}, whose classifiers read the representation alone and whose "
            "groups were not chained as now (format 2): refit the model"
        )
    if _sha256(path / WEIGHTS) != config.get("weights_sha256"):
        raise ModelFormatError(f"{path / WEIGHTS} does not match its checksum: the file is corrupted or was modified")
    try:
        tensors = load_file(path / WEIGHTS, device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises several types
        raise ModelFormatError(f"cannot read {path / WEIGHTS}: {err}") from err

    for name, saved in config.get("target_spaces", {}).items():
        if name in TARGETS and _target_space(name) != saved:
            raise ModelFormatError(
                f"{path} modelled target {name!r} in space {saved}, but this installation defines it as "
                f"{_target_space(name)}: refit the model"
            )

    params = dict(config["params"])
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
        # models saved before residual recalibration existed sample with factor 1
        state.setdefault("residual_scale", torch.ones_like(net.residual_scale))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFormatError(f"weights in {path} do not fit the saved architecture: {err}") from err
        net.to(device).eval()
        model.networks_.append(net)
    return model
