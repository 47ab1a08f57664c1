"""The interface every encoder follows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from astropy.table import Table

from ..utils.params import ParamsMixin

__all__ = ["Encoder"]


class Encoder(ParamsMixin, ABC):
    """Turns catalog rows (and, for image encoders, cutouts) into feature vectors.

    An encoder is fitted once on the training data (e.g. to learn feature
    scalings, or to train a VAE), then frozen; the estimator concatenates the
    features of all its encoders and feeds them to the shared MLP.

    Subclasses set :attr:`name` (their registry name), implement :meth:`fit`,
    :meth:`transform`, :meth:`get_config` and :meth:`get_arrays`, and can be
    rebuilt with :meth:`from_config`. They hold no torch state that cannot be
    expressed as named arrays, so models save without pickling code.

    As in scikit-learn, ``__init__`` should store each argument unchanged
    under its own name (no checks, no conversions); ``get_params``,
    ``set_params`` and `sklearn.base.clone` (from
    `~astro_galpost.utils.params.ParamsMixin`) then work.
    `~astro_galpost.GalaxyPosterior.fit` fits a clone of an encoder object it
    is given, never the object itself.

    An encoder named in ``GalaxyPosterior(encoder=...)`` is built by
    :meth:`from_estimator` from the estimator parameters listed in
    :attr:`estimator_options` (for example the ``photometry`` columns).
    """

    #: Registry name, written to saved models.
    name: ClassVar[str] = ""
    #: Whether :meth:`fit` and :meth:`transform` need ``images``.
    requires_images: ClassVar[bool] = False
    #: Parameters of `~astro_galpost.GalaxyPosterior` passed to :meth:`from_estimator`
    #: when the estimator builds this encoder from its registry name. Subclasses inherit it.
    estimator_options: ClassVar[tuple[str, ...]] = ()

    #: Number of features produced, set by :meth:`fit`.
    n_features_: int

    @classmethod
    def from_estimator(cls, **options: Any) -> Encoder:
        """The unfitted encoder a `~astro_galpost.GalaxyPosterior` uses when it is named by registry name.

        Parameters
        ----------
        **options
            The estimator's values of the parameters listed in
            :attr:`estimator_options`, by name (none by default).

        Returns
        -------
        Encoder
            ``cls(**options)`` unless a subclass says otherwise.
        """
        return cls(**options)

    @abstractmethod
    def fit(self, table: Table, images: Any = None) -> Encoder:
        """Learn whatever the encoder needs from the training rows; returns self."""

    @abstractmethod
    def transform(self, table: Table, images: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode rows.

        Returns
        -------
        features : `~numpy.ndarray`
            float32 array of shape ``(len(table), n_features_)``, finite everywhere.
        usable : `~numpy.ndarray`
            bool array of shape ``(len(table),)``; False where the inputs are
            too incomplete for a posterior (those rows get masked outputs).
        """

    @abstractmethod
    def get_config(self) -> dict:
        """JSON-serialisable constructor parameters and fitted scalars."""

    @abstractmethod
    def get_arrays(self) -> dict[str, np.ndarray]:
        """Fitted arrays (weights, scalings) by name, saved as safetensors."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray]) -> Encoder:
        """Rebuild a fitted encoder from :meth:`get_config` and :meth:`get_arrays`."""

    def feature_names(self) -> list[str]:
        """Names of the features, for diagnostics; generic by default."""
        return [f"{self.name}_{i}" for i in range(self.n_features_)]

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_features_")

    def __sklearn_clone__(self) -> Encoder:
        """`sklearn.base.clone` of this encoder: itself when fitted, else an unfitted copy of its parameters.

        A fitted encoder given to `~astro_galpost.GalaxyPosterior` is used as it
        is, so a clone of that estimator (as `~astro_galpost.evaluation.cross_val_samples`
        makes for each fold) must use it as it is too, not retrain it.
        """
        if self.is_fitted:
            return self
        from sklearn.base import clone

        return type(self)(**{key: clone(value, safe=False) for key, value in self.get_params(deep=False).items()})
