"""Out-of-distribution scores: how far a galaxy's features lie from the training set's."""

from __future__ import annotations

import numpy as np

from ..utils.params import ParamsMixin

__all__ = ["NeighbourDistance"]


class NeighbourDistance(ParamsMixin):
    """Mean distance to the k nearest training galaxies in feature space, scaled to a threshold.

    The neighbours are found by scikit-learn's `~sklearn.neighbors.NearestNeighbors`
    (Euclidean distances).

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

    def _check_params(self) -> None:
        """The parameters, checked when fitting (the constructor only stores them)."""
        for name, low in (("k", 1), ("max_reference", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        try:
            inside = not isinstance(self.quantile, bool) and 0.0 < float(self.quantile) <= 1.0
        except (TypeError, ValueError):
            inside = False
        if not inside:
            raise ValueError(f"quantile must be a number in (0, 1], got {self.quantile!r}")

    def _index(self, reference: np.ndarray) -> None:
        """Keep ``reference`` and a `~sklearn.neighbors.NearestNeighbors` index of it."""
        from sklearn.neighbors import NearestNeighbors

        self.reference_ = np.ascontiguousarray(reference, dtype=np.float32)
        self.neighbours_ = NearestNeighbors().fit(self.reference_)

    def _distances(self, x: np.ndarray | None) -> np.ndarray:
        """Mean distance to the ``k`` nearest reference galaxies; ``x=None``: of each reference galaxy to the others."""
        k = min(int(self.k), len(self.reference_) - int(x is None))
        distances, _ = self.neighbours_.kneighbors(x, n_neighbors=k)
        return distances.mean(axis=1)

    def fit(self, x: np.ndarray) -> NeighbourDistance:
        """Keep the reference features and calibrate the threshold."""
        self._check_params()
        rng = np.random.default_rng(self.random_state)
        x = np.asarray(x, dtype=np.float32)
        # a repeated row is its own nearest neighbour at distance 0 even left out: the threshold
        # would collapse (12 copies of a table flagged every new galaxy), so each row counts once
        _, first = np.unique(x, axis=0, return_index=True)
        x = x[np.sort(first)] if len(first) < len(x) else x
        if len(x) < 2:
            raise ValueError("at least two distinct training galaxies are needed for an out-of-distribution score")
        keep = rng.choice(len(x), self.max_reference, replace=False) if len(x) > self.max_reference else slice(None)
        self._index(x[keep])
        # each reference galaxy's own statistic, leaving it out of its neighbours
        self.threshold_ = float(np.quantile(self._distances(None), self.quantile))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores (N,): 1 is the training set's ``quantile``; larger is farther out."""
        if not hasattr(self, "neighbours_"):
            raise RuntimeError("this NeighbourDistance is not fitted: call fit(features) first")
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
        obj._index(np.asarray(arrays["reference"], dtype=np.float32))
        return obj
