"""Out-of-distribution scores: how far a galaxy's features lie from the training set's."""

from __future__ import annotations

import numpy as np
import torch

from ..utils.params import ParamsMixin

__all__ = ["NeighbourDistance"]


class NeighbourDistance(ParamsMixin):
    """Mean distance to the k nearest training galaxies in feature space, scaled to a threshold.

    The reference set is (a random subset of) the training features. The
    threshold is the ``quantile`` of the same statistic for the reference
    galaxies themselves (leaving each one out), so a score above 1 means "farther
    from the training data than all but ``1 - quantile`` of the training galaxies"
    — for example a z = 0.5 galaxy given to a model trained at z ≤ 0.3.

    Parameters
    ----------
    k : int
        Neighbours averaged.
    quantile : float
        Quantile of the training scores that defines a score of 1.
    max_reference : int
        Largest reference set kept (and saved with the model).
    random_state : int, optional
        Seed of the subset choice.
    """

    def __init__(self, k: int = 10, quantile: float = 0.99, max_reference: int = 4096, random_state=None) -> None:
        self.k = k
        self.quantile = quantile
        self.max_reference = max_reference
        self.random_state = random_state

    def _distances(self, x: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        ref = torch.as_tensor(self.reference_)
        k = min(self.k, len(ref) - int(exclude_self))
        out = np.empty(len(x))
        for start in range(0, len(x), 2048):  # bounded memory: 2048 × reference distances at a time
            d = torch.cdist(torch.as_tensor(x[start:start + 2048], dtype=ref.dtype), ref)
            nearest = torch.topk(d, k + int(exclude_self), largest=False).values
            out[start:start + 2048] = nearest[:, int(exclude_self):].mean(1).numpy()
        return out

    def fit(self, x: np.ndarray) -> NeighbourDistance:
        """Keep the reference features and calibrate the threshold."""
        rng = np.random.default_rng(self.random_state)
        x = np.asarray(x, dtype=np.float32)
        if len(x) < 2:
            raise ValueError("at least two training galaxies are needed for an out-of-distribution score")
        keep = rng.choice(len(x), self.max_reference, replace=False) if len(x) > self.max_reference else slice(None)
        self.reference_ = np.ascontiguousarray(x[keep])
        self.threshold_ = float(np.quantile(self._distances(self.reference_, exclude_self=True), self.quantile))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores (N,): 1 is the training set's ``quantile``; larger is farther out."""
        return self._distances(np.asarray(x, dtype=np.float32)) / max(self.threshold_, 1e-12)

    def get_config(self) -> dict:
        return {"k": self.k, "quantile": self.quantile, "max_reference": self.max_reference,
                "threshold_": self.threshold_}

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference_}

    @classmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray]) -> NeighbourDistance:
        obj = cls(config["k"], config["quantile"], config["max_reference"])
        obj.threshold_ = float(config["threshold_"])
        obj.reference_ = np.asarray(arrays["reference"], dtype=np.float32)
        return obj
