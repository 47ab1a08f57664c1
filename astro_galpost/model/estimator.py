"""`GalaxyPosterior`: calibrated posteriors of galaxy properties from photometry (and images)."""

from __future__ import annotations

import contextlib
import copy
import inspect
import numbers
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import astropy.units as u
import numpy as np
import torch
from astropy.table import MaskedColumn, QTable, Table
from astropy.uncertainty import Distribution
from astropy.utils.masked import Masked
from tqdm.auto import tqdm

from ..encoders import ENCODERS, Encoder
from ..utils.params import ParamsMixin, check_float, check_int, tuples_as_defaults
from ..utils.registry import UnknownEntryError
from ..utils.threads import torch_threads
from .layout import check_layout, target_space
from .network import GroupSpec, PosteriorNetwork
from .ood import NeighbourDistance
from .recalibration import fit_ensemble_recalibration, narrow_mixture
from .targets import GROUPS, TARGETS, TargetGroup, group_order
from .training import split_indices, train_network

__all__ = [
    "GalaxyPosterior", "PosteriorSamples", "MemberSamples", "NotFittedError", "UnusableRowsWarning",
    "DegenerateLabelsWarning",
]

#: The nine targets of the seed paper, in its order.
ALL_TARGETS = (
    "log_mstar", "log_sfr", "redshift", "log_mbh", "metallicity",
    "halpha", "hbeta", "nii_6584", "oiii_5007",
)
SDSS_MODEL_MAGS = tuple(f"modelMag_{b}" for b in "ugriz")


class NotFittedError(RuntimeError, AttributeError):
    """Raised when a `GalaxyPosterior` is used before `~GalaxyPosterior.fit`."""


class UnusableRowsWarning(UserWarning):
    """Some rows had too little usable input for a posterior; their outputs are masked."""


class DegenerateLabelsWarning(UserWarning):
    """A target's training labels are all equal: its posterior cannot learn a spread."""


class MemberSamples(NamedTuple):
    """One batch of `GalaxyPosterior.sample_members`: every ensemble member's draws, separately."""

    #: The batch's rows of the table.
    rows: slice
    #: float (n_ensemble, len(rows), n_samples, n_targets); NaN for rows with unusable inputs.
    samples: np.ndarray
    #: bool (len(rows),): False where the inputs were unusable.
    usable: np.ndarray


class PosteriorSamples(dict):
    """Posterior samples by target name, each an `~astropy.uncertainty.Distribution` of shape (N,).

    Attributes
    ----------
    usable : `~numpy.ndarray`
        bool (N,): False for rows whose inputs were unusable (their samples are NaN).
    probabilities : dict
        For groups with a detection classifier (metallicity), the probability
        that the galaxy's value is measurable, P(measurable | x), (N,) arrays.
        The samples of such a group are drawn from p(y | x, measurable): for
        metallicity, the gas-phase O/H the galaxy has if its spectrum allows a
        measurement (see :ref:`targets`).
    ood_score : `~numpy.ndarray`
        Out-of-distribution score (N,); above 1 the galaxy lies farther from
        the training set than 99% of training galaxies (see `~astro_galpost.model.ood`).
    """

    def __init__(
        self,
        samples: Mapping[str, Distribution],
        usable: np.ndarray,
        probabilities: dict[str, np.ndarray],
        ood_score: np.ndarray | None = None,
    ):
        super().__init__(samples)
        self.usable = usable
        self.probabilities = probabilities
        self.ood_score = ood_score

    @property
    def n_samples(self) -> int:
        return next(iter(self.values())).n_samples if self else 0


def _as_table(table: Any, what: str = "table") -> Table:
    if isinstance(table, Table):
        return table
    try:
        if type(table).__module__.startswith("pandas") and hasattr(table, "columns"):
            return Table.from_pandas(table)
        return Table(table)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise TypeError(f"{what} must be an astropy Table (or convertible to one), got {type(table).__name__}") from err


def _seed_sequence(random_state) -> np.random.SeedSequence:
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    return np.random.SeedSequence(random_state)


def _seed_from_key(key: Sequence[int]) -> int:
    """One int seed from a list of ints (a base seed, a row, a member), via `~numpy.random.SeedSequence`."""
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@contextlib.contextmanager
def _torch_seed(seed: int):
    """Seed torch's global generator (zuko samples from it) without disturbing the caller's."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _copy_encoder(encoder: Encoder) -> Encoder:
    """The encoder `GalaxyPosterior.fit` uses for an encoder object it is given.

    An unfitted encoder is cloned as in scikit-learn (its parameters only), so
    fitting never changes the user's object and a second `fit` never reuses
    the first one's fit; an encoder whose ``__init__`` converts its arguments
    (`sklearn.base.clone` refuses it) is deep-copied instead. A fitted encoder
    (e.g. a pretrained VAE shared by several estimators) is used as it is.
    """
    if encoder.is_fitted:
        return encoder
    from sklearn.base import clone

    try:
        return clone(encoder, safe=False)
    except (RuntimeError, AttributeError, TypeError):  # an __init__ that does not store its arguments
        return copy.deepcopy(encoder)


def _takes_seed(encoder: Encoder) -> bool:
    """Whether the encoder's constructor has a ``random_state`` (its fit is random, e.g. a VAE)."""
    return "random_state" in inspect.signature(type(encoder)).parameters


def _rows_of(xs: list[np.ndarray], rows: Any) -> list[np.ndarray]:
    """``x[rows]`` of each member's features; members that share an array share the result."""
    picked: dict[int, np.ndarray] = {}
    for x in xs:
        if id(x) not in picked:
            picked[id(x)] = x[rows]
    return [picked[id(x)] for x in xs]


def _check_device(device: Any) -> None:
    """The device exists on this machine (torch would fail later with a bare AssertionError)."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but torch finds no CUDA GPU on this machine: use device='cpu'")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}, but the MPS backend is not available: use device='cpu'")


def _check_photometry(photometry: Any) -> None:
    """Photometry is None or a sequence of distinct column names (not one string)."""
    if photometry is None:
        return
    if isinstance(photometry, str):
        raise TypeError(f"photometry must be a sequence of column names, e.g. [{photometry!r}], "
                        f"not the string {photometry!r}")
    names = list(photometry)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"photometry lists the columns {repeated} more than once")


def _check_n_samples(n_samples: Any) -> int:
    """``n_samples`` as an int of at least 1."""
    return check_int("n_samples", n_samples, 1)


def _check_percentiles(percentiles: Any) -> list[float]:
    """Percentiles as floats: at least one, each in [0, 100] and given once."""
    try:
        levels = [float(p) for p in ([percentiles] if np.isscalar(percentiles) else percentiles)]
    except (TypeError, ValueError) as err:
        raise ValueError(f"percentiles must be numbers in [0, 100], got {percentiles!r}") from err
    if not levels:
        raise ValueError("percentiles must list at least one percentile, e.g. (16, 50, 84)")
    bad = [p for p in levels if not 0 <= p <= 100]
    if bad:
        raise ValueError(f"percentiles must lie in [0, 100], got {bad}")
    names = [f"{p:g}" for p in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"percentiles {levels} repeat a value (each names an output column, "
                         f"p{', p'.join(names)})")
    return levels


def _check_labels(y: np.ndarray, valid: np.ndarray, targets: Mapping[str, str],
                  where: str = "the training table") -> None:
    """At least two usable labels per target (in ``where``); a warning when they are all equal."""
    for j, (name, column) in enumerate(targets.items()):
        values = y[valid[:, j], j]
        if len(values) < 2:
            (lo, hi), unit = TARGETS[name].valid_range, str(TARGETS[name].unit)
            raise ValueError(f"target {name!r}: column {column!r} has {len(values)} usable value(s) in "
                             f"{where} (finite, in {lo:g}..{hi:g}{' ' + unit if unit else ''}); at least 2 "
                             "are needed")
        if np.ptp(values) == 0:
            warnings.warn(f"target {name!r}: every usable value of column {column!r} equals {values[0]:g}; "
                          "its posterior cannot learn a spread", DegenerateLabelsWarning, stacklevel=3)


class GalaxyPosterior(ParamsMixin):
    """Calibrated posteriors of galaxy properties and emission-line fluxes.

    The method of Siddiqua, Mahmud & Martinez-Galarza (seed paper): encoders turn
    photometry (and gri images) into features; a shared MLP makes a 256-d
    representation; per target group, an MLP predicts the means and a
    conditional normalizing flow models the joint residuals. Groups are
    chained as they declare (`astro_galpost.model.targets.GROUPS`): black-hole mass
    and the emission lines on the core targets (M*, SFR, z), metallicity on the
    core and the lines, with a classifier of whether it is measurable, so every
    draw is one joint sample of all targets. Missing labels are imputed from
    their conditional given the galaxy's other labels during training.

    Parameters
    ----------
    targets : sequence of str or dict, optional
        Registry names of the targets (their default catalog columns are used),
        or a mapping ``{name: column}``. Default: all nine targets of the paper.
    photometry : sequence of str or None, optional
        Magnitude columns in wavelength order; error columns are found
        automatically (``err_<col>``, ``<col>_err``, ``modelMagErr_<band>``).
        Default: SDSS ``modelMag_u`` … ``modelMag_z``. `None` for images alone.
    encoder : str, Encoder or sequence of them, optional
        Registered encoder names or encoder objects. A name is built by the
        encoder class's `~astro_galpost.Encoder.from_estimator` from the
        estimator parameters it lists in ``estimator_options`` (``"photometry"``
        reads ``photometry``). `fit` fits a clone of an unfitted encoder object,
        never the object itself, and uses a fitted one (e.g. a pretrained VAE)
        as it is. Default ``"photometry"``.
    flows : dict, optional
        Per group, the registered flow name, or ``(name, options)``. Defaults
        are declared by the groups (`astro_galpost.model.targets.GROUPS`):
        ``realnvp`` (12 affine coupling layers) for the core and line groups,
        ``affine1d`` for black-hole mass and metallicity. A group of a single
        target cannot couple and gets ``nsf`` (a spline flow) unless a flow is
        given for it.
    representation : int, optional
        Size of the shared representation.
    hidden : int, optional
        Width of the shared MLP's hidden layers.
    dropout : float, optional
        Dropout in the shared MLP.
    n_ensemble : int or "auto", optional
        Number of independently initialised networks (a deep ensemble); samples
        are drawn from their equal-weight mixture. ``"auto"`` (the default):
        ``AUTO_ENSEMBLE["members"]`` = 3 networks when fewer than
        ``AUTO_ENSEMBLE["below_rows"]`` = 5,000 training rows carry a label,
        one otherwise (``n_ensemble_`` is the number fitted). Below that size
        one network's validation rows (fewer than 750 at the default
        ``validation_fraction``) fix its width factor only to ±0.03-0.05
        (``benchmarks/width_factor_noise.py``), while an ensemble fits it on
        the held-out rows of all its members; on mock galaxies at ECO's size
        that no other choice saw (``benchmarks/small_sample.py``), three
        members missed 4 of 60 calibration goals (5 with one width factor per group) and one network 11, at three
        times the training time (``docs/training.rst``). An encoder that `fit` trains
        and whose training is random (it takes a ``random_state``, as the VAE
        does) is trained once per member, with a seed of the member's, so the
        mixture also averages over the encoder's training (``member_encoders_``);
        other encoders, and encoders given fitted, are shared.
    validation_fraction : float, optional
        Fraction of training rows held out for early stopping.
    refine_heads : bool, optional
        After the joint training, train each target group's own heads (mean
        MLP, flow, classifier) further on the frozen representation,
        early-stopped on that group's validation loss
        (`~astro_galpost.model.training.refine_group_heads`): the joint fit
        stops where the sum of the groups' losses is lowest, before a group
        such as the core targets has finished learning how its widths change
        with the inputs. Needs ``validation_fraction > 0`` and more than one
        group.
    recalibrate : bool, optional
        After training, fit a shift that removes the bias of the posterior
        medians of each target that is a group of its own and a linear map per
        group of the flow residuals (about the flow's centre) that gives the
        held-out rows' central credible intervals of each target, and of each
        difference of two targets of a group, their nominal coverage
        (`astro_galpost.model.recalibration`; they are ``residual_shifts_`` and
        ``residual_scales_``, with ``residual_scale_intervals_`` saying how
        precisely the held-out rows fix each factor). The shifts are fitted per member, the maps
        once for all members on the held-out rows of all of them; an
        ensemble's draws are then narrowed about each member's mean so that
        the mixture, not only each member, is calibrated
        (`~astro_galpost.model.recalibration.narrow_mixture`). Needs
        ``validation_fraction > 0``.
    batch_size : int or None, optional
        Training rows per optimiser step. `None` (the default): an eighth of
        each member's training rows, between 16 and 256, so that an epoch is
        several steps: with fewer rows than the batch an epoch is one step, a
        network overfits within a few of them, and early stopping keeps the
        first epoch's weights (M_BH from 84 RESOLVE galaxies with batches of
        256: R² 0.04, see ``docs/sdss.rst``).
    max_epochs, learning_rate, weight_decay, patience : optional
        Optimisation settings (AdamW; the learning rate halves on plateaus;
        training stops after ``patience`` epochs without improvement).
    device : str, optional
        Torch device for training and sampling (``"cpu"`` or ``"cuda"``).
    random_state : int, Generator or None, optional
        Seed for the split, initialisation, batching and sampling.
    progress : bool, optional
        Show progress bars.
    n_threads : int or None, optional
        Torch intra-op threads used inside `fit`, `sample` and `predict` (the
        caller's setting is restored afterwards). None: automatic, see
        `astro_galpost.utils.threads` (``OMP_NUM_THREADS`` if set, else 1, the
        measured best on a shared machine); never more than the CPUs this
        process may use.

    Notes
    -----
    The estimator follows scikit-learn's conventions: ``get_params``,
    ``set_params`` and `sklearn.base.clone` work, and the constructor only
    stores its arguments. They are checked by `fit`, whose errors name the
    parameter and its allowed range. `fit` works on clones of unfitted encoder
    objects (``encoders_``; ``member_encoders_`` holds each ensemble member's),
    so refitting never reuses an encoder fitted by an earlier call; an encoder
    that was fitted before it was given is used as it is.
    `sample_members` draws from each deep-ensemble member separately.

    Examples
    --------
    >>> from astro_galpost import GalaxyPosterior
    >>> from astro_galpost.datasets import make_mock_catalog
    >>> table = make_mock_catalog(600, random_state=1)
    >>> gp = GalaxyPosterior(targets=["redshift"], max_epochs=5, progress=False, random_state=0)
    >>> gp = gp.fit(table[:500])
    >>> post = gp.sample(table[500:], n_samples=100)
    >>> post["redshift"].shape, post["redshift"].n_samples
    ((100,), 100)
    """

    def __init__(
        self,
        targets: Sequence[str] | Mapping[str, str] = ALL_TARGETS,
        photometry: Sequence[str] | None = SDSS_MODEL_MAGS,
        encoder: str | Encoder | Sequence[str | Encoder] = "photometry",
        flows: Mapping[str, str | tuple[str, dict]] | None = None,
        representation: int = 256,
        hidden: int = 256,
        dropout: float = 0.0,
        n_ensemble: int | str = "auto",
        validation_fraction: float = 0.15,
        refine_heads: bool = True,
        recalibrate: bool = True,
        batch_size: int | None = None,
        max_epochs: int = 300,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 25,
        device: str = "cpu",
        random_state: int | np.random.Generator | None = None,
        progress: bool = True,
        n_threads: int | None = None,
    ) -> None:
        self.targets = targets
        self.photometry = photometry
        self.encoder = encoder
        self.flows = flows
        self.representation = representation
        self.hidden = hidden
        self.dropout = dropout
        self.n_ensemble = n_ensemble
        self.validation_fraction = validation_fraction
        self.refine_heads = refine_heads
        self.recalibrate = recalibrate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.n_threads = n_threads

    #: ``n_ensemble="auto"``: this many members when fewer than ``below_rows`` training rows carry a label.
    AUTO_ENSEMBLE = {"members": 3, "below_rows": 5000}

    #: `few_labelled_images`: the VAE's settings, then the estimator's (``docs/images.rst`` gives the reasons).
    FEW_IMAGES_VAE = {"image_size": 64, "learning_rate": 1e-3, "max_epochs": 30, "validation_fraction": 0.0,
                      "kl_weight": 1.0, "free_bits": 0.0}
    FEW_IMAGES = {"n_ensemble": 5, "validation_fraction": 0.2, "representation": 64, "hidden": 64,
                  "dropout": 0.2, "weight_decay": 1e-3}

    @classmethod
    def few_labelled_images(
        cls, targets: Sequence[str] | Mapping[str, str], *, light_statistics: bool = True,
        vae: Encoder | None = None, **params: Any,
    ) -> GalaxyPosterior:
        """An estimator from images set for a few hundred labelled cutouts (the package's image path).

        The settings were fixed a priori and are measured on galaxies that no
        choice saw (``benchmarks/metallicity_images.py``; ``docs/images.rst``,
        "A few hundred labelled galaxies"): a VAE of 64 pixels with the paper's
        objective (mean squared error plus the KL divergence, unweighted),
        trained by `fit` for a fixed 30 epochs on every training image
        (``FEW_IMAGES_VAE``), once per
        member of a five-member ensemble of a small, regularised network, each
        member stopping early and recalibrating on its own fifth of the rows
        (``FEW_IMAGES``). The defaults of `GalaxyPosterior` are made for thousands
        of labelled rows.

        Parameters
        ----------
        targets : sequence of str or mapping
            As for `GalaxyPosterior`.
        light_statistics : bool, optional
            Add the ``image_stats`` encoder beside the VAE.
        vae : `~astro_galpost.encoders.Encoder`, optional
            An image encoder to use instead of the VAE above, e.g. a VAE
            pretrained on unlabelled cutouts (used as given if fitted).
        **params
            Any other `GalaxyPosterior` parameter, replacing the settings
            above. ``photometry`` (default None: images alone) adds the
            photometric encoder; ``random_state`` and ``progress`` also seed
            and show the VAE's training.

        Returns
        -------
        GalaxyPosterior
            Unfitted; ``fit(table, images=cutouts)`` trains it.

        Examples
        --------
        >>> gp = GalaxyPosterior.few_labelled_images({"metallicity": "oh_p50"}, random_state=0)
        >>> gp.n_ensemble, gp.encoder[0].image_size, gp.encoder[1]
        (5, 64, 'image_stats')
        """
        params = {"photometry": None, **cls.FEW_IMAGES, **params}
        if vae is None:
            vae = ENCODERS.get("vae")(**cls.FEW_IMAGES_VAE, random_state=params.get("random_state"),
                                      device=params.get("device", "cpu"), progress=params.get("progress", True))
        encoder = [vae] + (["image_stats"] if light_statistics else [])
        if params["photometry"] is not None:
            encoder.append("photometry")
        return cls(targets=targets, encoder=encoder, **params)

    # ------------------------------------------------------------------ setup
    def _validate_params(self) -> None:
        """Check every constructor parameter; errors name the parameter and its allowed range."""
        _check_photometry(self.photometry)
        for name in ("representation", "hidden", "max_epochs", "patience"):
            check_int(name, getattr(self, name), 1)
        if not (isinstance(self.n_ensemble, str) and self.n_ensemble == "auto"):
            try:
                check_int("n_ensemble", self.n_ensemble, 1)
            except ValueError:
                raise ValueError(f"n_ensemble must be 'auto' or a whole number >= 1, got {self.n_ensemble!r}") from None
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1)
        check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_float("validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
        check_float("learning_rate", self.learning_rate, 1e-12)
        check_float("weight_decay", self.weight_decay)
        _check_device(self.device)
        if not (self.random_state is None or isinstance(self.random_state, (numbers.Integral, np.random.Generator,
                                                                            np.random.SeedSequence))):
            raise TypeError("random_state must be None, an int, a numpy Generator or a SeedSequence, "
                            f"got {self.random_state!r}")

    def _resolve_targets(self) -> dict[str, str]:
        spec = self.targets
        if isinstance(spec, str):
            spec = [spec]
        if isinstance(spec, Mapping):
            pairs = [(name, column) for name, column in spec.items()]
        else:
            pairs = [(name, None) for name in spec]
        if not pairs:
            raise ValueError("no targets given")
        resolved = {}
        for name, column in pairs:
            target = TARGETS.get(name)
            resolved[name] = column or target.column
        return resolved

    def _make_encoders(self) -> list[Encoder]:
        """Encoders built from registry names, clones of unfitted encoder objects, fitted ones as given."""
        specs = self.encoder if isinstance(self.encoder, (list, tuple)) else [self.encoder]
        if not specs:
            raise ValueError("at least one encoder is needed")
        encoders = []
        for spec in specs:
            if isinstance(spec, Encoder):
                encoders.append(_copy_encoder(spec))
            elif isinstance(spec, str):
                encoders.append(self._encoder_from_name(spec))
            else:
                raise TypeError(f"encoder must be a registered name or an Encoder, got {spec!r}")
        return encoders

    def _member_encoders(self, first: list[Encoder], table: Table, images: Any, member) -> list[Encoder]:
        """The encoders of an ensemble member after the first, whose fitted encoders are ``first``.

        An encoder that `fit` trains and whose training is random (its
        constructor takes a ``random_state``, e.g. a VAE) is trained again for
        each member with a seed of the member's, so the ensemble averages over
        the encoder's training as over the networks' (bagging); the first member
        keeps the encoder's own seed, so ``n_ensemble=1`` is unchanged. Other
        encoders, and encoders given fitted, are shared by all members.
        """
        seed = int(member.generate_state(3)[2])
        own = []
        for enc, fresh in zip(first, self._make_encoders()):
            if fresh.is_fitted or not _takes_seed(fresh):
                own.append(enc)
            else:
                own.append(fresh.set_params(random_state=seed).fit(table, images))
        return own

    @property
    def encoders_(self) -> list[Encoder]:
        """The fitted encoders (the first member's: see ``member_encoders_`` for an ensemble)."""
        return self.member_encoders_[0]

    def _encoder_from_name(self, name: str) -> Encoder:
        """The registered encoder ``name``, given the estimator parameters it asks for (`Encoder.estimator_options`)."""
        cls = ENCODERS.get(name)
        own = self._param_names()
        unknown = [option for option in cls.estimator_options if option not in own]
        if unknown:
            raise TypeError(f"encoder {name!r} ({cls.__name__}) asks for the estimator options {unknown}, "
                            f"which are not parameters of GalaxyPosterior (they are: {', '.join(own)})")
        return cls.from_estimator(**{option: getattr(self, option) for option in cls.estimator_options})

    def _group_specs(self, names: list[str]) -> tuple[list[GroupSpec], dict[str, str]]:
        """The network's groups, in sampling order, from the groups the targets declare (`GROUPS`)."""
        by_group: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_group.setdefault(TARGETS[name].group, []).append(i)
        user = dict(self.flows or {})
        unknown = set(user) - set(by_group)
        if unknown:
            raise ValueError(f"flows given for groups {sorted(unknown)} that no target belongs to "
                             f"(groups: {list(by_group)})")
        specs, chosen = [], {}
        for g in group_order(list(by_group)):
            declared = GROUPS[g] if g in GROUPS else TargetGroup(g)
            flow, options = declared.flow, dict(declared.flow_options)
            if g in user:
                flow, options = user[g] if isinstance(user[g], (tuple, list)) else (user[g], {})
            elif len(by_group[g]) == 1 and flow == "realnvp":
                flow = "nsf"  # coupling needs two dimensions
            cond = [i for parent in declared.condition_on for i in by_group.get(parent, [])]
            specs.append(GroupSpec(g, by_group[g], flow, dict(options), cond, declared.detect))
            chosen[g] = flow
        return specs, chosen

    def _check_fitted(self) -> None:
        if not hasattr(self, "networks_"):
            raise NotFittedError(
                "this GalaxyPosterior is not fitted yet: call fit(table) before sample() or predict()"
            )

    # ---------------------------------------------------------------- inputs
    def _encode(self, table: Table, images: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """Each member's features (members with the same encoders share one array) and the usable rows."""
        features, xs, usable = {}, {}, np.ones(len(table), bool)
        for encoders in self.member_encoders_:
            for enc in encoders:
                if id(enc) in features:
                    continue
                if enc.requires_images and images is None:
                    raise ValueError(f"encoder {enc.name!r} needs images: pass images=... with one per table row")
                features[id(enc)], ok = enc.transform(table, images)
                usable &= ok
            key = tuple(map(id, encoders))
            if key not in xs:
                xs[key] = np.concatenate([features[id(enc)] for enc in encoders], axis=1).astype(np.float32)
        return [xs[tuple(map(id, encoders))] for encoders in self.member_encoders_], usable

    def _read_labels(self, table: Table) -> tuple[np.ndarray, np.ndarray]:
        values = np.full((len(table), len(self.targets_)), np.nan)
        valid = np.zeros_like(values, dtype=bool)
        for j, (name, column) in enumerate(self.targets_.items()):
            target = TARGETS[name]
            raw, ok = target.read(table, column)
            values[:, j] = target.to_model(raw)
            valid[:, j] = ok
        return values, valid

    def _check_input(self, table: Any, images: Any, what: str) -> tuple[Table, Any]:
        table = _as_table(table, what)
        if len(table) == 0:
            raise ValueError(f"the {what} is empty: nothing to {'fit' if what == 'training table' else 'predict'}")
        if isinstance(images, (str, os.PathLike)):
            # a FITS cube on disk: read it once, keeping its mask, so batches can slice it
            from ..images import as_image_array

            cube, mask = as_image_array(images, n_rows=len(table))
            images = np.ma.MaskedArray(cube, mask=mask)
        if images is not None and hasattr(images, "__len__") and len(images) != len(table):
            raise ValueError(f"{len(images)} images given for a table of {len(table)} rows")
        return table, images

    # ------------------------------------------------------------------- fit
    def fit(self, table: Table, images: Any = None) -> GalaxyPosterior:
        """Train on a labelled catalog.

        Parameters
        ----------
        table : `~astropy.table.Table`
            One row per galaxy with the photometry columns and target columns.
            Missing labels (NaN, masked, SDSS sentinels) are allowed: a galaxy
            missing a label in one group still trains the other groups.
        images : array-like, optional
            Cutouts, one per row, for image encoders.

        Returns
        -------
        self : GalaxyPosterior
        """
        self._validate_params()
        needs_held_out = [name for name in ("recalibrate", "refine_heads") if getattr(self, name)]
        if self.validation_fraction == 0 and needs_held_out:
            warnings.warn(f"validation_fraction=0 holds out no rows, so {' and '.join(needs_held_out)} "
                          "cannot work and will not: the posterior widths are the network's own",
                          UserWarning, stacklevel=2)
        self._forget_fit()  # a fit that fails leaves an unfitted model, not one fit's networks under another's names
        try:
            with torch_threads(self.n_threads):
                return self._fit(table, images)
        except BaseException:
            self._forget_fit()
            raise

    def _forget_fit(self) -> None:
        """Remove every fitted attribute (the names ending in ``_``)."""
        for name in [name for name in vars(self) if name.endswith("_") and not name.startswith("_")]:
            delattr(self, name)

    def _fit(self, table: Table, images: Any) -> GalaxyPosterior:
        table, images = self._check_input(table, images, "training table")
        targets = self._resolve_targets()
        photometry = set(self.photometry or [])
        for name, column in targets.items():
            if column in photometry:
                raise ValueError(
                    f"column {column!r} is both the {name!r} target and a photometry column. In SDSS CAS "
                    "exports 'z' is the redshift in SpecObj but the z-band magnitude in PhotoObj: rename "
                    "one of them, e.g. targets={'redshift': 'zs'}"
                )
        self.targets_ = targets
        y, valid = self._read_labels(table)
        _check_labels(y, valid, targets)

        encoders = self._make_encoders()
        for enc in encoders:
            if not enc.is_fitted:
                enc.fit(table, images)
        self.n_ensemble_ = self._ensemble_size(int(valid.any(axis=1).sum()))
        seeds = _seed_sequence(self.random_state)
        split_seed, ood_seed, *member_seeds = seeds.spawn(2 + self.n_ensemble_)
        self.member_encoders_ = [encoders] + [self._member_encoders(encoders, table, images, member)
                                              for member in member_seeds[1:]]
        xs, usable = self._encode(table, images)
        if not usable.any():
            raise ValueError("no training row has usable inputs (check the photometry columns)")
        self.n_features_in_ = xs[0].shape[1]
        self.n_train_ = int(usable.sum())
        xs, y, valid = _rows_of(xs, usable), y[usable], valid[usable]
        if not usable.all():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DegenerateLabelsWarning)  # said once, above
                _check_labels(y, valid, targets, "the rows whose inputs are usable")
        self.ood_ = NeighbourDistance(random_state=ood_seed).fit(xs[0])

        self.label_mean_ = np.array([np.mean(y[valid[:, j], j]) for j in range(y.shape[1])])
        std = np.array([np.std(y[valid[:, j], j]) for j in range(y.shape[1])])
        self.label_scale_ = np.where(std > 0, std, 1.0)
        y = (y - self.label_mean_) / self.label_scale_

        self.groups_, self.flows_ = self._group_specs(list(targets))
        self.networks_, self.history_, recalibration_rows = [], [], []
        recalibration_seed = int(member_seeds[0].generate_state(2)[1])
        for k, (member, x) in enumerate(zip(member_seeds, xs)):
            net, history, rows = self._train_member(k, int(member.generate_state(1)[0]), x, y, valid, split_seed)
            self.networks_.append(net)
            self.history_.append(history)
            if rows is not None:
                recalibration_rows.append(rows)
        self.recalibrated_ = bool(recalibration_rows)
        if recalibration_rows:
            # one map per group from the held-out rows of every member (each scored by its own member)
            with _torch_seed(recalibration_seed):
                fit_ensemble_recalibration([net.to(self.device) for net in self.networks_], recalibration_rows,
                                           rng=recalibration_seed, label_scale=self.label_scale_,
                                           names=list(self.targets_))
        if self.device == "cpu":
            self.networks_ = [net.to("cpu") for net in self.networks_]
        return self

    def _ensemble_size(self, n_labelled: int) -> int:
        """``n_ensemble``, or for ``"auto"`` the members `AUTO_ENSEMBLE` gives ``n_labelled`` rows."""
        if self.n_ensemble != "auto":
            return int(self.n_ensemble)
        return self.AUTO_ENSEMBLE["members"] if n_labelled < self.AUTO_ENSEMBLE["below_rows"] else 1

    def _train_member(self, k: int, seed: int, x: np.ndarray, y: np.ndarray, valid: np.ndarray, split_seed) -> tuple:
        """Train ensemble member ``k``; return its network, history and recalibration rows (or None).

        Each member validates on a different window of one permutation of the
        rows. The recalibration rows are its held-out rows and up to three
        times as many of its training rows (shifts from all, widths from the
        held-out ones), as ``(x, y, valid, held_out)``.
        """
        train_index, val_index = split_indices(len(x), self.validation_fraction, np.random.default_rng(split_seed), fold=k)
        if len(train_index) < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves {len(train_index)} of {len(x)} usable "
                "rows for training; at least 2 are needed: lower validation_fraction or add rows")
        with _torch_seed(seed):
            net = self._build_network()
            history = train_network(
                net, x, y, valid, train_index=train_index, val_index=val_index,
                batch_size=self._training_batch(len(train_index)), max_epochs=self.max_epochs,
                learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                patience=self.patience, seed=seed, device=self.device, progress=self.progress,
                description=f"fit {k + 1}/{self.n_ensemble_}" if self.n_ensemble_ > 1 else "fit",
                refine_heads=self.refine_heads,
            )
        if not (self.recalibrate and len(val_index)):
            return net, history, None
        some_train = np.random.default_rng(seed).permutation(train_index)[: 3 * len(val_index)]
        rows = np.concatenate([val_index, some_train])
        return net, history, (x[rows], y[rows], valid[rows], np.arange(len(rows)) < len(val_index))

    def _training_batch(self, n_train: int) -> int:
        """``batch_size``, or for `None` an eighth of ``n_train`` rows clipped to 16-256."""
        if self.batch_size is not None:
            return self.batch_size
        return int(np.clip(n_train // 8, 16, 256))

    @property
    def residual_scales_(self) -> dict[str, np.ndarray]:
        """Per target, its width factor in each ensemble member (equal for all): how the recalibration widens its spread.

        The factor is the one its group's map gives it (the ratio of its
        spreads with and without the map; see ``recalibrate``).
        """
        return self._per_member("residual_scale")

    @property
    def residual_scale_intervals_(self) -> dict[str, np.ndarray]:
        """Per target, the 16th and 84th percentiles of its width factor over bootstrap resamples of the held-out rows.

        How far the factor in ``residual_scales_`` would move with another draw
        of as many held-out galaxies (about ±0.85/√N for N of them; see
        `~astro_galpost.model.recalibration.fit_width_factor`); a factor of
        1.1 ± 0.05 moves a 68% coverage by about ±0.02. NaN where no factor was
        fitted (``recalibrate=False``, or too few labelled held-out rows).
        """
        self._check_fitted()
        interval = self.networks_[0].residual_scale_interval.cpu().numpy().astype(float)
        interval[:, ~np.all(interval > 0, axis=0)] = np.nan  # 0: not fitted
        return {name: interval[:, j].copy() for j, name in enumerate(self.targets_)}

    @property
    def residual_shifts_(self) -> dict[str, np.ndarray]:
        """Per target, the shift of each ensemble member, in the target's modelled space (see ``recalibrate``)."""
        shifts = self._per_member("residual_shift")
        return {name: shifts[name] * self.label_scale_[j] for j, name in enumerate(self.targets_)}

    def _per_member(self, buffer: str) -> dict[str, np.ndarray]:
        self._check_fitted()
        values = np.stack([getattr(net, buffer).cpu().numpy() for net in self.networks_])
        return {name: values[:, j] for j, name in enumerate(self.targets_)}

    def _build_network(self) -> PosteriorNetwork:
        return PosteriorNetwork(
            self.n_features_in_, self.groups_, representation=self.representation,
            hidden=self.hidden, dropout=self.dropout,
        )

    # ---------------------------------------------------------------- sample
    def _encoded_batches(
        self, table: Table, images: Any, random_state, batch_size: int, row_offset: int
    ) -> Iterator[tuple[slice, list[np.ndarray], np.ndarray, list[int]]]:
        """Yield ``(rows, features, usable, key)`` batch by batch (``features``: one array per member).

        ``key``, ``[base seed, index of the batch's first row]`` (counted from
        ``row_offset``), seeds the batch's draws: the base seed comes from
        ``random_state`` (default the estimator's), so memory does not grow
        with the table, and a catalog processed in chunks whose lengths are
        multiples of ``batch_size`` gives exactly the result of one call on
        the whole catalog.
        """
        base_seed = int(_seed_sequence(self.random_state if random_state is None else random_state).generate_state(1)[0])
        n = len(table)
        bar = tqdm(total=n, desc="sample", unit="galaxy", disable=not self.progress or n <= batch_size, leave=False)
        for start in range(0, n, batch_size):
            rows = slice(start, min(start + batch_size, n))
            with torch_threads(self.n_threads):
                xs, usable = self._encode(table[rows], None if images is None else images[rows])
            yield rows, xs, usable, [base_seed, row_offset + start]
            bar.update(len(usable))
        bar.close()

    def _unstandardise(self, draws: np.ndarray, space: str) -> np.ndarray:
        """Standardised draws (..., n_targets) in the targets' modelled space, or in catalog space."""
        out = draws * self.label_scale_ + self.label_mean_
        if space == "catalog":
            for j, name in enumerate(self.targets_):
                out[..., j] = TARGETS[name].from_model(out[..., j])
        return out

    def _iter_samples(
        self, table: Table, images: Any, n_samples: int, random_state, batch_size: int, row_offset: int = 0
    ) -> Iterator[tuple[slice, np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]]:
        """Yield ``(rows, samples, probabilities, usable, ood_score)`` of the ensemble's mixture, batch by batch.

        ``samples`` is (rows, n_samples, n_targets) in catalog space (NaN for
        unusable rows); batches and seeds as in `_encoded_batches`.
        """
        k = len(self.networks_)
        if k > 1 and n_samples < 2 * k:
            outcome = f"only the first {n_samples} member(s) are drawn" if n_samples < k else "it is not narrowed"
            warnings.warn(f"n_samples={n_samples} for an ensemble of {k}: the mixture needs at least two draws "
                          f"per member ({2 * k}) to be sampled evenly and narrowed (docs/calibration.rst); {outcome}",
                          UserWarning, stacklevel=4)
        # equal-weight mixture of the ensemble: each member draws its share of samples
        shares = [n_samples // k + (i < n_samples % k) for i in range(k)]
        device = torch.device(self.device)
        for rows, xs, usable, key in self._encoded_batches(table, images, random_state, batch_size, row_offset):
            out = np.full((len(usable), n_samples, len(self.targets_)), np.nan)
            probs = {g.name: np.full(len(usable), np.nan) for g in self.groups_ if g.detect}
            if usable.any():
                with _torch_seed(_seed_from_key(key)):
                    draws, member_probs = [], []
                    for net, share, x in zip(self.networks_, shares, _rows_of(xs, usable)):
                        if share:
                            s, p = net.sample(torch.as_tensor(x, device=device), share)
                            draws.append(s)
                            member_probs.append(p)
                    if self._narrows_mixture():
                        draws = narrow_mixture(draws)
                    s = torch.cat(draws, dim=0)
                    if k > 1:
                        s = s[torch.randperm(n_samples, device=device)]
                out[usable] = s.permute(1, 0, 2).cpu().numpy()
                for g in probs:
                    probs[g][usable] = torch.stack([p[g] for p in member_probs]).mean(0).cpu().numpy()
            ood = np.where(usable, self.ood_.score(xs[0]), np.nan)
            yield rows, self._unstandardise(out, "catalog"), probs, usable, ood

    def _narrows_mixture(self) -> bool:
        """Whether the mixture is narrowed (`narrow_mixture`): an ensemble whose members were recalibrated
        when it was fitted (``set_params`` after the fit changes nothing until the next fit)."""
        return len(self.networks_) > 1 and self.recalibrated_

    def sample_members(
        self,
        table: Table,
        images: Any = None,
        n_samples: int = 1000,
        random_state: int | None = None,
        batch_size: int = 1024,
        row_offset: int = 0,
        space: str = "catalog",
    ) -> Iterator[MemberSamples]:
        """Draw posterior samples from every deep-ensemble member separately, batch by batch.

        `sample` draws from the equal-weight mixture of the members (each
        narrowed about its mean when they were recalibrated, see
        ``recalibrate``); this method gives each member's own posterior,
        as calibrated on its own, e.g. to split the spread
        into aleatoric and epistemic parts
        (`~astro_galpost.evaluation.uncertainty_decomposition`). Galaxies are
        encoded and sampled ``batch_size`` at a time, so memory grows with
        ``n_ensemble × batch_size × n_samples``, not with the table.

        Parameters
        ----------
        table : `~astropy.table.Table`
            Rows to infer; needs the model's input columns.
        images : array-like, optional
            Cutouts for image encoders, one per row.
        n_samples : int, optional
            Samples per galaxy *per member*.
        random_state : int, optional
            Seed; default the estimator's ``random_state``. Each member of each
            batch gets its own seed, derived from it, the batch's first row
            (counted from ``row_offset``) and the member's index.
        batch_size : int, optional
            Galaxies per batch.
        row_offset : int, optional
            Index of the table's first row in a larger catalog processed in chunks.
        space : {"catalog", "model"}, optional
            Values in the catalog's units (as `sample` returns them, without
            units) or in each target's modelled space (`~astro_galpost.Target.to_model`:
            dex for masses and SFR, log10 of the line fluxes).

        Yields
        ------
        MemberSamples
            ``(rows, samples, usable)`` per batch: the batch's slice of the
            table, float ``(n_ensemble, len(rows), n_samples, n_targets)``
            draws with targets in the order of ``targets_`` (NaN for rows with
            unusable inputs), and the bool ``usable`` mask of the batch.

        Examples
        --------
        >>> from astro_galpost import GalaxyPosterior
        >>> from astro_galpost.datasets import make_mock_catalog
        >>> table = make_mock_catalog(300, random_state=1)
        >>> gp = GalaxyPosterior(targets=["redshift"], n_ensemble=2, max_epochs=2, representation=16,
        ...                      hidden=16, progress=False, random_state=0).fit(table[:250])
        >>> [batch.samples.shape for batch in gp.sample_members(table[250:], n_samples=20, batch_size=40)]
        [(2, 40, 20, 1), (2, 10, 20, 1)]
        """
        self._check_fitted()
        table, images = self._check_input(table, images, "table")
        n_samples, batch_size = _check_n_samples(n_samples), check_int("batch_size", batch_size, 1)
        if space not in ("catalog", "model"):
            raise ValueError(f"space must be 'catalog' or 'model', got {space!r}")
        return self._iter_members(table, images, n_samples, random_state, batch_size, row_offset, space)

    def _iter_members(
        self, table: Table, images: Any, n_samples: int, random_state, batch_size: int, row_offset: int, space: str
    ) -> Iterator[MemberSamples]:
        """The generator behind `sample_members` (whose checks run at the call, not at the first batch)."""
        device = torch.device(self.device)
        for rows, xs, usable, key in self._encoded_batches(table, images, random_state, batch_size, row_offset):
            out = np.full((len(self.networks_), len(usable), n_samples, len(self.targets_)), np.nan)
            if usable.any():
                for m, (net, x) in enumerate(zip(self.networks_, _rows_of(xs, usable))):
                    with torch_threads(self.n_threads), _torch_seed(_seed_from_key([*key, m])):
                        draws, _ = net.sample(torch.as_tensor(x, device=device), n_samples)
                    out[m, usable] = draws.permute(1, 0, 2).cpu().numpy()
            yield MemberSamples(rows, self._unstandardise(out, space), usable)

    def _warn_unusable(self, usable: np.ndarray, outcome: str) -> None:
        bad = int((~usable).sum())
        if bad:
            warnings.warn(
                f"{bad} of {len(usable)} rows have unusable inputs (too few measured bands, or images "
                f"empty or masked over half their centre); their posteriors are {outcome}",
                UnusableRowsWarning, stacklevel=3,
            )

    def sample(
        self,
        table: Table,
        images: Any = None,
        n_samples: int = 1000,
        random_state: int | None = None,
        batch_size: int = 1024,
        row_offset: int = 0,
    ) -> PosteriorSamples:
        """Draw joint posterior samples for every row.

        Parameters
        ----------
        table : `~astropy.table.Table`
            Rows to infer; needs the photometry columns used in training.
        images : array-like, optional
            Cutouts for image encoders, one per row.
        n_samples : int, optional
            Samples per galaxy.
        random_state : int, optional
            Seed; default the estimator's ``random_state`` (the same seed gives
            the same samples, also after `save`/`load`).
        batch_size : int, optional
            Galaxies per batch; bounds memory.
        row_offset : int, optional
            Index of the table's first row in a larger catalog processed in
            chunks (lengths multiples of ``batch_size``): the chunks then
            reproduce one call on the whole catalog exactly.

        Returns
        -------
        PosteriorSamples
            ``{target: Distribution}``, each of shape (N,) with ``n_samples``
            samples in the target's unit (a `~astropy.units.Dex` distribution
            for dex quantities). Rows with unusable inputs are NaN.
        """
        self._check_fitted()
        table, images = self._check_input(table, images, "table")
        n_samples, batch_size = _check_n_samples(n_samples), check_int("batch_size", batch_size, 1)
        with torch_threads(self.n_threads):
            batches = list(self._iter_samples(table, images, n_samples, random_state, batch_size, row_offset))
        out = np.concatenate([b[1] for b in batches])
        usable = np.concatenate([b[3] for b in batches])
        probs = {g: np.concatenate([b[2][g] for b in batches]) for g in batches[0][2]}
        self._warn_unusable(usable, "NaN")
        samples = {name: TARGETS[name].distribution(out[..., j]) for j, name in enumerate(self.targets_)}
        return PosteriorSamples(samples, usable, probs, np.concatenate([b[4] for b in batches]))

    def predict(
        self,
        table: Table,
        images: Any = None,
        n_samples: int = 1000,
        percentiles: Iterable[float] = (16, 50, 84),
        random_state: int | None = None,
        batch_size: int = 1024,
        row_offset: int = 0,
        replace_columns: bool = False,
    ) -> QTable:
        """Posterior summaries as new columns of a copy of ``table``.

        Adds ``<target>_p16``, ``<target>_p50``, ``<target>_p84`` (or the
        requested ``percentiles``) with the target's unit, for metallicity
        ``metallicity_prob``, the probability that it is measurable, and
        ``ood_score``/``ood_flag`` (out-of-distribution score and flag). Rows
        with unusable inputs are masked (``ood_flag`` too). Other parameters
        are those of `sample`.

        Parameters
        ----------
        percentiles : iterable of float, optional
            Percentiles in [0, 100], at least one, each once.
        replace_columns : bool, optional
            Replace input columns that have the names of output columns (see
            `output_columns`); without it such a table raises `ValueError`.

        Returns
        -------
        `~astropy.table.QTable`
        """
        self._check_fitted()
        table, images = self._check_input(table, images, "table")
        levels = _check_percentiles(percentiles)
        n_samples, batch_size = _check_n_samples(n_samples), check_int("batch_size", batch_size, 1)
        clash = [c for c in self.output_columns(levels) if c in table.colnames]
        if clash and not replace_columns:
            raise ValueError(f"the table already has the output columns {clash} (a previous prediction?); "
                             "remove or rename them, or pass replace_columns=True (--replace-columns)")
        names = [f"{name}_p{level:g}".replace(".", "_") for name in self.targets_ for level in levels]
        values = np.full((len(table), len(names)), np.nan)
        usable = np.zeros(len(table), bool)
        probs = {g.name: np.full(len(table), np.nan) for g in self.groups_ if g.detect}
        ood = np.full(len(table), np.nan)
        with torch_threads(self.n_threads):
            for rows, out, batch_probs, ok, batch_ood in self._iter_samples(
                table, images, n_samples, random_state, batch_size, row_offset
            ):
                # (levels, rows, targets) -> rows x (targets, levels), matching `names`; unusable rows
                # stay NaN (their draws are all NaN: no percentile, and no warning for them)
                q = np.full((len(levels), len(ok), out.shape[2]), np.nan)
                if ok.any():
                    q[:, ok] = np.nanpercentile(out[ok], levels, axis=1)
                values[rows] = q.transpose(1, 2, 0).reshape(len(ok), -1)
                usable[rows] = ok
                ood[rows] = batch_ood
                for g in probs:
                    probs[g][rows] = batch_probs[g]
        self._warn_unusable(usable, "masked")
        result = QTable(table, copy=True)
        fitted = list(self.targets_)
        detectable = {fitted[j]: g.name for g in self.groups_ if g.detect for j in g.targets}
        for i, label in enumerate(names):
            name, level = label.rsplit("_p", 1)
            target = TARGETS[name]
            result[label] = Masked(target.quantity(values[:, i]), mask=~usable)
            given = f" given that it is measurable (probability in {detectable[name]}_prob)" if name in detectable else ""
            result[label].info.description = (
                f"{level.replace('_', '.')}th percentile of the {target.description} posterior{given}")
        for g, p in probs.items():
            label = f"{g}_prob"
            result[label] = Masked(u.Quantity(p, u.dimensionless_unscaled), mask=~usable)
            result[label].info.description = f"probability that the {g} is measurable, P(measurable | inputs)"
        result["ood_score"] = Masked(u.Quantity(ood, u.dimensionless_unscaled), mask=~usable)
        result["ood_score"].info.description = (
            "distance to the training set in feature space; 1 = the 99th percentile of training galaxies")
        # masked where unusable; formats without masked booleans (FITS) store False there
        result["ood_flag"] = MaskedColumn(np.where(usable, ood > 1.0, False), mask=~usable, fill_value=False)
        result["ood_flag"].info.description = "True where the galaxy lies outside the training distribution"
        return result

    def output_columns(self, percentiles: Iterable[float] = (16, 50, 84)) -> list[str]:
        """Names of the columns `predict` adds, in order."""
        self._check_fitted()
        levels = _check_percentiles(percentiles)
        names = [f"{name}_p{level:g}".replace(".", "_") for name in self.targets_ for level in levels]
        names += [f"{g.name}_prob" for g in self.groups_ if g.detect]
        return [*names, "ood_score", "ood_flag"]

    # ------------------------------------------------------------ persistence
    def save(self, path, overwrite: bool = False) -> None:
        """Save the fitted model to the folder ``path`` (JSON config + safetensors weights).

        The folder is written under a temporary name, synced, and swapped in when
        complete (`astro_galpost.utils.atomic.replace_folder`), so an interrupted save
        leaves the old or the new model under ``path``, never none or half of one.
        With ``overwrite=True`` only a folder holding a saved model (and nothing
        else) is replaced; any other folder raises `~astro_galpost.utils.atomic.NotOurFolderError`
        (a `FileExistsError`), and nothing is deleted. The layout is that of
        `astro_galpost.model.persistence` (the envelope).
        """
        from .envelope import envelope_header, jsonable, write_model_folder

        self._check_fitted()
        tensors = {f"network{k}.{name}": value.detach().to("cpu").contiguous()
                   for k, net in enumerate(self.networks_) for name, value in net.state_dict().items()}
        specs = []  # per member, each encoder's entry; None where a later member shares the first's
        for k, own in enumerate(self.member_encoders_):
            specs.append([])
            for i, enc in enumerate(own):
                if k and enc is self.encoders_[i]:
                    specs[k].append(None)
                    continue
                tensors.update(_as_tensors(enc.get_arrays(), f"member{k}.encoder{i}." if k else f"encoder{i}."))
                specs[k].append({"name": enc.name, "config": jsonable(enc.get_config())})
        encoders, member_encoders = specs[0], specs[1:]
        tensors.update(_as_tensors(self.ood_.get_arrays(), "ood."))
        params = {**self.get_params(deep=False), "encoder": _encoder_param(self.encoder)}
        config = envelope_header(
            params={k: jsonable(v) for k, v in params.items()},
            targets=self.targets_,
            # the spaces the labels were modelled in: a registry change must not silently reinterpret weights
            target_spaces={name: target_space(name) for name in self.targets_},
            groups=[g.to_dict() for g in self.groups_], flows=self.flows_, encoders=encoders,
            member_encoders=member_encoders,
            ood=self.ood_.get_config(), n_features_in=self.n_features_in_, n_train=self.n_train_,
            label_mean=self.label_mean_.tolist(), label_scale=self.label_scale_.tolist(),
            history=[h.to_dict() for h in self.history_], recalibrated=self.recalibrated_,
        )
        write_model_folder(path, tensors, config, overwrite=overwrite)

    @classmethod
    def load(cls, path, device: str = "cpu") -> GalaxyPosterior:
        """Load a model saved with `save`, on ``device`` (CPU by default, whatever trained it).

        Raises
        ------
        FileNotFoundError
            When ``path`` or one of its files is missing.
        ModelFormatError
            When the files are corrupted or from an incompatible format version.
        """
        from .envelope import ModelFormatError, read_model_folder

        _check_device(device)
        path = Path(path)
        config, tensors = read_model_folder(path, "model")
        check_layout(config, path)
        try:
            return cls._from_config(config, tensors, path, device)
        except UnknownEntryError as err:  # a plugin's flow, encoder or target, not installed here
            raise ModelFormatError(f"{path} needs the {err.kind} {err.name!r}, which no installed package "
                                   f"registers (registered: {err.known}): install the plugin that provides it") from err
        except KeyError as err:  # a config edited by hand (its checksum recomputed)
            raise ModelFormatError(f"{path} is not a complete saved model: its config has no entry "
                                   f"{err.args[0]!r}") from err

    @classmethod
    def _from_config(cls, config: dict, tensors: Mapping[str, torch.Tensor], path: Path, device: str) -> GalaxyPosterior:
        """The model `load` reads: ``config`` and ``tensors`` of the folder ``path``."""
        from .envelope import restore_generator
        from .training import TrainingHistory

        params = dict(config["params"])
        params["random_state"] = restore_generator(params.get("random_state"))
        params["encoder"] = _restore_encoder_param(params["encoder"])
        model = cls(**{**tuples_as_defaults(cls, params), "device": device})
        model.targets_, model.flows_ = dict(config["targets"]), dict(config["flows"])
        model.groups_ = [GroupSpec(**g) for g in config["groups"]]
        model.n_features_in_, model.n_train_ = int(config["n_features_in"]), int(config["n_train"])
        model.label_mean_ = np.asarray(config["label_mean"], dtype=float)
        model.label_scale_ = np.asarray(config["label_scale"], dtype=float)
        model.history_ = [TrainingHistory(**h) for h in config["history"]]
        model.ood_ = NeighbourDistance.from_config(config["ood"], _arrays(tensors, "ood."))
        model.networks_ = [model._load_network(_arrays(tensors, f"network{k}.", numpy=False), path)
                           for k in range(len(config["history"]))]
        model.n_ensemble_ = len(model.networks_)
        # saved before it was recorded: the recalibration ran where these parameters asked for it
        model.recalibrated_ = bool(config.get("recalibrated", model.recalibrate and model.validation_fraction > 0))
        model.member_encoders_ = _load_encoders(config, tensors, len(model.networks_))
        return model

    def _load_network(self, state: dict[str, torch.Tensor], path) -> PosteriorNetwork:
        from .envelope import ModelFormatError

        net = self._build_network()
        # models saved before the factors' intervals were kept have none
        state.setdefault("residual_scale_interval", net.residual_scale_interval)
        # models saved before the maps scaled a group's targets by one factor each
        state.setdefault("residual_map", torch.diag(state.get("residual_scale", net.residual_scale)))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFormatError(f"weights in {path} do not fit the saved architecture: {err}") from err
        return net.to(self.device).eval()


def _encoder_param(encoder: Any) -> Any:
    """The ``encoder`` parameter as saved: names as they are, an encoder object as its name and
    constructor parameters (so that a loaded model's `get_params` rebuilds it, as `clone` would)."""
    def spec(item: Any) -> Any:
        return item if isinstance(item, str) else {"name": item.name, "params": item.get_params(deep=False)}

    return [spec(e) for e in encoder] if isinstance(encoder, (list, tuple)) else spec(encoder)


def _restore_encoder_param(saved: Any) -> Any:
    """Inverse of `_encoder_param`: unfitted encoders with the saved constructor parameters."""
    from .envelope import restore_generator

    def build(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        encoder = ENCODERS.get(item["name"])
        return encoder(**tuples_as_defaults(encoder, {k: restore_generator(v) for k, v in item["params"].items()}))

    return [build(e) for e in saved] if isinstance(saved, list) else build(saved)


def _load_encoders(config: dict, tensors: Mapping[str, torch.Tensor], n_members: int) -> list[list[Encoder]]:
    """Each member's encoders as `GalaxyPosterior.save` wrote them (models without ``member_encoders`` share them)."""
    def build(spec: dict, prefix: str) -> Encoder:
        return ENCODERS.get(spec["name"]).from_config(spec["config"], _arrays(tensors, prefix))

    first = [build(spec, f"encoder{i}.") for i, spec in enumerate(config["encoders"])]
    own = config.get("member_encoders") or [[None] * len(first)] * (n_members - 1)
    return [first] + [[enc if spec is None else build(spec, f"member{k}.encoder{i}.")
                       for i, (enc, spec) in enumerate(zip(first, specs))]
                      for k, specs in enumerate(own, start=1)]


def _as_tensors(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + name: torch.as_tensor(np.ascontiguousarray(value)) for name, value in arrays.items()}


def _arrays(tensors: Mapping[str, torch.Tensor], prefix: str, numpy: bool = True) -> dict:
    """The entries of ``tensors`` under ``prefix``, without it (as numpy arrays unless not ``numpy``)."""
    return {k[len(prefix):]: (v.numpy() if numpy else v) for k, v in tensors.items() if k.startswith(prefix)}
