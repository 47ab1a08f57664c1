"""Cross-validated posterior samples: every galaxy drawn from a model that never saw it.

A choice made on the galaxies a number is reported for (a flow, a width, a
number of members) makes that number optimistic. The choice is instead made by
inner cross-validation of the training galaxies (Varma & Simon 2006; scikit-learn's
``cross_val_predict``): the training rows are split into folds, a copy of the
estimator with each candidate setting is fitted on all folds but one and samples
the one left out, and the candidate whose pooled held-out posteriors are best
calibrated is refitted on every training row. The outer test galaxies take
part in no choice.

References
----------
Varma, S. & Simon, R. 2006, BMC Bioinformatics, 7, 91, "Bias in error
estimation when using cross-validation for model selection".

Examples
--------
Any estimator with scikit-learn's ``get_params``, ``fit(table)`` and
``sample(table, n_samples)`` works; `~astro_galpost.GalaxyPosterior` is the
one of this package:

>>> import numpy as np
>>> from astropy.table import Table
>>> from astropy.uncertainty import Distribution
>>> from astro_galpost.utils.params import ParamsMixin
>>> class Mean(ParamsMixin):  # a posterior N(training mean, 1) for every row
...     def fit(self, table):
...         self.mean_ = float(np.mean(table["y"]))
...         return self
...     def sample(self, table, n_samples):
...         draws = np.random.default_rng(0).normal(self.mean_, 1.0, (len(table), n_samples))
...         return {"y": Distribution(draws)}
>>> table = Table({"y": np.arange(6.0)})
>>> samples = cross_val_samples(Mean(), table, n_folds=3, n_samples=2000)
>>> samples["y"].shape, samples["y"].n_samples
((6,), 2000)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table
from astropy.uncertainty import Distribution

__all__ = ["cross_val_samples"]


def cross_val_samples(
    estimator: Any,
    table: Table,
    *,
    n_folds: int = 5,
    n_samples: int = 200,
    random_state: int | None = 0,
) -> dict[str, Distribution]:
    """Posterior samples of every row of ``table`` from a copy of ``estimator`` fitted without it.

    The rows are split into ``n_folds`` folds at random (`sklearn.model_selection.KFold`,
    shuffled); for each fold an unfitted copy of ``estimator`` (`sklearn.base.clone`:
    its parameters, none of its fit) is fitted on the other folds and samples this one.

    Parameters
    ----------
    estimator : object
        An estimator with ``get_params`` (cloned, never fitted itself), ``fit(table)``
        and ``sample(table, n_samples=...)`` returning ``{name: Distribution}`` of
        shape (rows,), e.g. `~astro_galpost.GalaxyPosterior`.
    table : `~astropy.table.Table`
        Labelled galaxies, as ``estimator.fit`` takes them.
    n_folds : int, optional
        Number of folds (at least 2, at most the number of rows).
    n_samples : int, optional
        Draws per galaxy.
    random_state : int or None, optional
        Seeds the split into folds.

    Returns
    -------
    dict
        ``{name: Distribution}`` of shape (rows,) in ``table``'s row order, for
        every name each fold's samples have.

    Raises
    ------
    ValueError
        If ``n_folds`` is below 2 or above the number of rows.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= len(table):
        raise ValueError(f"n_folds must be an integer from 2 to the number of rows ({len(table)}), got {n_folds!r}")
    folds = KFold(n_splits=int(n_folds), shuffle=True, random_state=random_state).split(np.arange(len(table)))
    pooled: dict[str, Any] = {}
    for fit_rows, held_out in folds:
        samples = clone(estimator).fit(table[fit_rows]).sample(table[held_out], n_samples=n_samples)
        for name, dist in samples.items():
            draws = dist.distribution
            if name not in pooled:
                pooled[name] = np.full((len(table),) + draws.shape[1:], np.nan) * getattr(draws, "unit", 1)
            pooled[name][held_out] = draws
    return {name: Distribution(draws) for name, draws in pooled.items()}
