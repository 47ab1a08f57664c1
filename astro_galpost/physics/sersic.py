"""Sérsic (1963) profiles: the constant :math:`b_n` and the enclosed light.

A Sérsic profile :math:`I(r) \\propto \\exp[-b_n (r/r_e)^{1/n}]` holds half its
light inside :math:`r_e` when :math:`\\gamma(2n, b_n) = \\Gamma(2n)/2`, so
:math:`b_n` is the inverse of the regularised lower incomplete gamma function
at 1/2, `scipy.special.gammaincinv` ``(2n, 0.5)``, as astropy's
`~astropy.modeling.functional_models.Sersic2D` computes it.

References
----------
- Sérsic, J. L. 1963, Boletín de la Asociación Argentina de Astronomía, 6, 41.
- Graham, A. W. & Driver, S. P. 2005, PASA, 22, 118.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammainc, gammaincinv

__all__ = ["sersic_b", "sersic_enclosed_fraction"]


def sersic_b(n: float | np.ndarray) -> float | np.ndarray:
    """Sérsic :math:`b_n`, exact: the root of ``gammainc(2n, b) = 1/2``.

    Parameters
    ----------
    n : float or array-like
        Sérsic index (> 0).

    Returns
    -------
    float or ndarray
        :math:`b_n`, so that the effective radius encloses half the light.

    Examples
    --------
    >>> from astro_galpost.physics import sersic_b
    >>> print(f"{sersic_b(1.0):.5f} {sersic_b(4.0):.5f}")
    1.67835 7.66925
    """
    n = np.asarray(n, dtype=float)
    return gammaincinv(2.0 * n, 0.5)


def sersic_enclosed_fraction(n: float | np.ndarray, r_over_re: np.ndarray) -> np.ndarray:
    """Fraction of a circular Sérsic profile's light inside radius ``r`` (Graham & Driver 2005).

    Parameters
    ----------
    n : float or array-like
        Sérsic index.
    r_over_re : array-like
        Radius in units of the effective (half-light) radius.

    Returns
    -------
    ndarray
        ``gammainc(2n, b_n (r/r_e)^(1/n))``.

    Examples
    --------
    >>> from astro_galpost.physics import sersic_enclosed_fraction
    >>> print(f"{sersic_enclosed_fraction(4.0, 1.0):.3f}")
    0.500
    """
    n = np.asarray(n, dtype=float)
    return gammainc(2.0 * n, sersic_b(n) * np.asarray(r_over_re) ** (1.0 / n))
