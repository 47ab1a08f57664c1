"""Dust attenuation and extinction curves :math:`k(\\lambda) = A_\\lambda / E(B-V)`.

Two curves are offered by name:

``'cardelli1989'``
    The Milky-Way extinction law of Cardelli, Clayton & Mathis (1989), evaluated by
    `dust_extinction.parameter_averages.CCM89` (which returns
    :math:`A_\\lambda/A_V`, multiplied here by :math:`R_V`).
``'calzetti2000'``
    The starburst attenuation curve of Calzetti et al. (2000).  The
    ``dust_extinction`` package holds extinction laws only; Calzetti's
    attenuation curve lives in its sister package ``dust_attenuation``
    (``dust_attenuation.averages.C00``), which is not published on PyPI, so the
    two published formulae (Calzetti et al. 2000, eq. 4) are evaluated here.

References
----------
- Calzetti, D. et al. 2000, ApJ, 533, 682.
- Cardelli, J. A., Clayton, G. C. & Mathis, J. S. 1989, ApJ, 345, 245.
- Gordon, K. D. 2024, JOSS, 9, 7023 (``dust_extinction``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from astropy import units as u

__all__ = ["CALZETTI2000_RANGE", "CURVE_R_V", "k_lambda", "resolve_r_v"]

CurveName = Literal["calzetti2000", "cardelli1989"]

#: Default :math:`R_V` of each curve: 4.05 (Calzetti et al. 2000) and 3.1 (Milky Way).
CURVE_R_V: dict[str, float] = {"calzetti2000": 4.05, "cardelli1989": 3.1}

#: Wavelength range over which Calzetti et al. (2000) fitted their curve.
CALZETTI2000_RANGE = (0.12, 2.2) * u.micron


def resolve_r_v(curve: str, r_v: float | None = None) -> float:
    """:math:`R_V` of ``curve``: ``r_v`` if given, else the curve's default.

    Raises
    ------
    ValueError
        If ``curve`` is not one of `CURVE_R_V`.
    """
    if curve not in CURVE_R_V:
        raise ValueError(f"curve must be one of {sorted(CURVE_R_V)}, got {curve!r}")
    return CURVE_R_V[curve] if r_v is None else float(r_v)


def _calzetti2000(lam_um: np.ndarray, r_v: float) -> np.ndarray:
    lo, hi = CALZETTI2000_RANGE.to_value(u.micron)
    if np.any((lam_um < lo) | (lam_um > hi)):
        raise ValueError("wavelength outside 0.12-2.2 micron, where the Calzetti (2000) curve "
                         "is defined (pass clip=True to use its end values beyond)")
    x = 1.0 / lam_um
    blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + r_v
    red = 2.659 * (-1.857 + 1.040 * x) + r_v
    return np.where(lam_um < 0.63, blue, red)


def _cardelli1989(lam_um: np.ndarray, r_v: float) -> np.ndarray:
    # imported here: dust_extinction loads scipy.interpolate, which `import astro_galpost.physics`
    # need not pay for
    from astropy.modeling import InputParameterError
    from dust_extinction.parameter_averages import CCM89

    try:
        model = CCM89(Rv=r_v)
    except InputParameterError as err:
        raise ValueError(f"r_v = {r_v} is outside the range {CCM89.Rv_range} over which "
                         f"dust_extinction's CCM89 is defined: {err}") from None
    try:
        return r_v * np.asarray(model(lam_um * u.micron), dtype=float)
    except ValueError as err:
        raise ValueError(f"wavelength outside the range of the Cardelli et al. (1989) curve, "
                         f"{1 / CCM89.x_range[1]:.3g}-{1 / CCM89.x_range[0]:.3g} micron: {err}") from None


def _clip_to_range(lam_um: np.ndarray, curve: str) -> np.ndarray:
    if curve == "calzetti2000":
        lo, hi = CALZETTI2000_RANGE.to_value(u.micron)
    else:
        from dust_extinction.parameter_averages import CCM89

        lo, hi = 1.0 / CCM89.x_range[1], 1.0 / CCM89.x_range[0]
    return np.clip(lam_um, lo, hi)


def k_lambda(
    wavelength: u.Quantity,
    curve: CurveName = "calzetti2000",
    r_v: float | None = None,
    *,
    clip: bool = False,
) -> np.ndarray:
    r"""Attenuation/extinction curve :math:`k(\lambda) = A_\lambda / E(B-V)`.

    ``'calzetti2000'``
        Starburst attenuation curve of Calzetti et al. (2000), eqs. (4):
        :math:`k = 2.659(-2.156 + 1.509/\lambda - 0.198/\lambda^2 +
        0.011/\lambda^3) + R_V` for 0.12–0.63 µm and
        :math:`k = 2.659(-1.857 + 1.040/\lambda) + R_V` for 0.63–2.20 µm
        (λ in µm), :math:`R_V = 4.05`.  It gives :math:`k(\mathrm{H}\beta)
        = 4.60`, :math:`k(\mathrm{H}\alpha) = 3.33`.
    ``'cardelli1989'``
        Milky-Way extinction law of Cardelli, Clayton & Mathis (1989),
        :math:`k = R_V\,a(x) + b(x)`, from `dust_extinction.parameter_averages.CCM89`
        (0.1–3.33 µm, :math:`2 \le R_V \le 6`; default :math:`R_V = 3.1`).  It
        gives :math:`k(\mathrm{H}\beta) = 3.609`, :math:`k(\mathrm{H}\alpha) = 2.535`.

    (The often-quoted pair 3.61/2.53 belongs to Cardelli et al., not to
    Calzetti et al.)  The two published Calzetti pieces do not join exactly:
    :math:`k` jumps by about 0.024 at 0.63 µm; the formulas are used as
    published.

    Parameters
    ----------
    wavelength : Quantity
        Wavelength(s), any length unit (spectral equivalencies not applied).
    curve : {'calzetti2000', 'cardelli1989'}, optional
        Which curve.
    r_v : float, optional
        :math:`R_V`; defaults to 4.05 (Calzetti) or 3.1 (Cardelli).
    clip : bool, optional
        Beyond the curve's wavelength range use its value at the nearer end
        (default: raise `ValueError`).

    Returns
    -------
    ndarray
        :math:`k(\lambda)`.

    Raises
    ------
    ValueError
        If ``curve`` is unknown, a wavelength lies outside the curve's range
        (unless ``clip``), or ``r_v`` is outside 2–6 for ``'cardelli1989'``.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astro_galpost.physics import k_lambda, HALPHA_WAVELENGTH, HBETA_WAVELENGTH
    >>> print(round(float(k_lambda(HBETA_WAVELENGTH, "cardelli1989")), 2),
    ...       round(float(k_lambda(HALPHA_WAVELENGTH, "cardelli1989")), 3))
    3.61 2.535
    >>> print(round(float(k_lambda(5500 * u.AA, "calzetti2000")), 2))
    4.05
    """
    rv = resolve_r_v(curve, r_v)
    lam = np.atleast_1d(u.Quantity(wavelength).to_value(u.micron)).astype(float)
    if clip:
        lam = _clip_to_range(lam, curve)
    fn = _calzetti2000 if curve == "calzetti2000" else _cardelli1989
    k = fn(lam, rv)
    return k.reshape(np.shape(wavelength)) if np.ndim(wavelength) else k[0]
