"""Tests of the MOCK SDSS-like images (astro_galpost.datasets.mock_images).

Most checks compare the rendered light with what the catalogue says it should be (total
flux per band, colours, half-light radii, concentration, noise level), so each would fail
if a flux, size, unit or noise convention were wired up wrongly.
"""

from __future__ import annotations

import time

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from scipy.special import gammaincinv
from scipy.stats import spearmanr

from astro_galpost.datasets.mock import make_mock_catalog
from astro_galpost.datasets.mock_images import (
    SDSS_DEPTH_5SIGMA,
    MockImages,
    _sersic_ft_numeric,
    make_mock_images,
    mock_catalog_with_images,
    sky_noise_from_depth,
)
from astro_galpost.physics import sersic_b

BANDS = ("g", "r", "i")
PIXEL = 0.396  # arcsec


def catalogue_flux(table, bands=BANDS):
    """Catalogue fluxes in nanomaggies, (n, nband), written out independently."""
    mags = [np.asarray(table[f"modelMag_{b}"], dtype=float) for b in bands]  # in mag
    return np.stack([10.0 ** (-0.4 * (m - 22.5)) for m in mags], axis=1)


def radius_enclosing(image, centre, fractions=(0.5, 0.9)):
    """Circular radii (pixels) enclosing the given fractions of the stamp's light."""
    y, x = np.indices(image.shape)
    r = np.hypot(x - centre[0], y - centre[1]).ravel()
    order = np.argsort(r)
    cum = np.cumsum(image.ravel()[order])
    cum /= cum[-1]
    return [float(np.interp(f, cum, r[order])) for f in fractions]


def one_galaxy(**columns):
    """A one-row table of an r = 16 galaxy; keyword arguments override columns."""
    row = dict(
        modelMag_g=16.6,
        modelMag_r=16.0,
        modelMag_i=15.7,
        bulge_frac=0.0,
        r_half_disc=4.0,
        r_half_bulge=1.0,
        axis_ratio=1.0,
        axis_ratio_bulge=1.0,
        position_angle=0.0,
        z=0.05,
    )
    row.update(columns)
    return Table({k: [v] for k, v in row.items()})


@pytest.fixture(scope="module")
def cat():
    """A flux-limited mock catalogue shared by the tests of this module."""
    return make_mock_catalog(300, random_state=5)


@pytest.fixture(scope="module")
def clean(cat):
    """Noise-free 64-pixel images of ``cat``, with centres and component fluxes."""
    return make_mock_images(cat, noise=False, full_output=True, random_state=2)


@pytest.fixture(scope="module")
def compact(cat):
    """Rows small enough that (almost) all their light falls in a 160-pixel stamp."""
    small = (u.Quantity(cat["r_half_disc"]).to_value(u.arcsec) < 3.0) & (
        u.Quantity(cat["r_half_bulge"]).to_value(u.arcsec) < 1.5
    )
    sub = cat[small][:60]
    assert len(sub) >= 30
    return sub


def test_shape_dtype_and_units(cat):
    sub = cat[:12]
    images = make_mock_images(sub, random_state=0)
    assert images.shape == (12, 3, 64, 64)
    assert images.dtype == np.float32
    assert np.all(np.isfinite(images))

    out = make_mock_images(sub, random_state=0, full_output=True)
    assert isinstance(out, MockImages)
    assert out.unit == u.nmgy
    assert out.bands == BANDS
    assert out.noiseless.shape == out.images.shape and out.noiseless.dtype == np.float32
    assert out.mask.shape == (12, 64, 64) and out.mask.dtype == bool
    assert out.centres.shape == (12, 2)
    assert out.sky_noise.shape == (3,)
    assert out.psf_fwhm.unit == u.arcsec and out.psf_fwhm.shape == (3,)
    assert u.allclose(out.pixel_scale, 0.396 * u.arcsec)
    np.testing.assert_array_equal(out.images, images)

    # Angles in other units, and bands in another order, give the same pixels.
    same = make_mock_images(sub, pixel_scale=0.396 / 3600 * u.deg, random_state=0)
    np.testing.assert_allclose(same, images, atol=1e-6)
    gr = make_mock_images(sub, bands=("r", "g"), noise=False, random_state=0)
    np.testing.assert_allclose(gr[:, ::-1], out.noiseless[:, :2], rtol=1e-5, atol=1e-6)


def test_reproducible(cat):
    sub = cat[:20]
    a = make_mock_images(sub, random_state=7)
    b = make_mock_images(sub, random_state=7)
    c = make_mock_images(sub, random_state=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # noise=False uses the same offsets, so it is the noise-free version of the same draw.
    full = make_mock_images(sub, random_state=7, full_output=True)
    clean = make_mock_images(sub, random_state=7, noise=False)
    np.testing.assert_array_equal(full.noiseless, clean)


def test_total_flux_matches_catalogue(compact):
    """Noise-free light in a 160-pixel stamp is the catalogue flux in each band."""
    out = make_mock_images(compact, size=160, noise=False, full_output=True, random_state=1)
    ratio = out.noiseless.sum(axis=(2, 3)) / catalogue_flux(compact)
    assert np.all(np.abs(ratio - 1.0) < 0.03), ratio.min()
    assert abs(np.median(ratio) - 1.0) < 0.005
    # Bulge + disc split conserves each band's flux exactly.
    np.testing.assert_allclose(out.bulge_flux + out.disc_flux, catalogue_flux(compact), rtol=1e-10)


def test_flux_never_created(cat, clean):
    """Stamps can lose the wings of big galaxies but never hold more than the total."""
    ratio = clean.noiseless.sum(axis=(2, 3)) / catalogue_flux(cat)
    assert ratio.max() < 1.0 + 1e-4
    assert np.median(ratio) > 0.97


def test_tiny_de_vaucouleurs_bulge_keeps_its_flux():
    """A sub-pixel n = 4 bulge: the case where sampling the cusp at pixel centres fails."""
    table = one_galaxy(bulge_frac=1.0, r_half_bulge=0.15, axis_ratio_bulge=0.6, position_angle=30.0)
    for psf in ("moffat", "gaussian"):
        out = make_mock_images(
            table, size=96, psf=psf, noise=False, full_output=True, random_state=3,
            bulge_colour=None,
        )
        np.testing.assert_allclose(
            out.noiseless[0].sum(axis=(1, 2)), catalogue_flux(table)[0], rtol=1e-3
        )
        assert out.noiseless.min() > -1e-4 * out.noiseless.max()  # no ringing


@pytest.mark.parametrize("psf", ["moffat", "gaussian"])
def test_point_like_source_flux_and_psf_shape(psf):
    """A galaxy far smaller than a pixel renders as the PSF: flux and FWHM are right."""
    table = one_galaxy(r_half_disc=0.01)
    out = make_mock_images(
        table, size=64, psf=psf, noise=False, full_output=True, max_offset=0.0,
        bulge_colour=None,
    )
    img = out.noiseless[0, 1]
    np.testing.assert_allclose(img.sum(), catalogue_flux(table)[0, 1], rtol=2e-3)
    # FWHM from the area above half the peak (pixels integrate the PSF: ~3 % broader).
    fwhm_px = 2.0 * np.sqrt((img > 0.5 * img.max()).sum() / np.pi)
    assert 1.4 / PIXEL * 0.9 < fwhm_px < 1.4 / PIXEL * 1.2


def test_half_light_radius_of_face_on_disc():
    table = one_galaxy(r_half_disc=4.0)  # 10.1 pixels
    expected = 4.0 / PIXEL
    for psf_fwhm, tol in ((0.0, 0.01), (1.4, 0.10)):
        out = make_mock_images(
            table, size=160, psf_fwhm=psf_fwhm * u.arcsec, noise=False, full_output=True,
            random_state=4,
        )
        r50 = radius_enclosing(out.noiseless[0, 1], out.centres[0])[0]
        assert abs(r50 / expected - 1.0) < tol, (psf_fwhm, r50, expected)


def test_bulges_are_more_concentrated(cat, clean):
    # Pure profiles of the same half-light radius, no PSF: r90/r50 close to the analytic
    # values of an exponential (2.32) and of a de Vaucouleurs profile (5.5 if untruncated,
    # less inside a finite stamp).
    conc = {}
    for bt in (0.0, 1.0):
        table = one_galaxy(bulge_frac=bt, r_half_disc=2.0, r_half_bulge=2.0)
        out = make_mock_images(
            table, size=160, psf_fwhm=0 * u.arcsec, noise=False, full_output=True,
            bulge_colour=None,
        )
        r50, r90 = radius_enclosing(out.noiseless[0, 1], out.centres[0])
        conc[bt] = r90 / r50
    exp_conc = gammaincinv(2, 0.9) / gammaincinv(2, 0.5)
    assert abs(conc[0.0] / exp_conc - 1.0) < 0.02
    assert conc[1.0] > 4.0 > conc[0.0]

    # In the catalogue, light concentration follows B/T.
    r = np.array([radius_enclosing(im, c) for im, c in zip(clean.noiseless[:, 1], clean.centres)])
    concentration = r[:, 1] / r[:, 0]
    bt = np.asarray(cat["bulge_frac"])
    assert np.median(concentration[bt > 0.6]) > np.median(concentration[bt < 0.2]) + 0.4
    assert spearmanr(bt, concentration)[0] > 0.6


def test_higher_redshift_galaxies_are_smaller(cat, clean):
    r50 = np.array(
        [radius_enclosing(im, c)[0] for im, c in zip(clean.noiseless[:, 1], clean.centres)]
    )
    z = np.asarray(cat["z"])
    assert spearmanr(z, r50)[0] < -0.25
    assert np.median(r50[z > 0.13]) < 0.8 * np.median(r50[z < 0.07])


def test_colour_matches_catalogue(compact):
    out = make_mock_images(compact, size=160, noise=False, full_output=True, random_state=6)
    flux = out.noiseless.sum(axis=(2, 3))
    cf = catalogue_flux(compact)
    for j, k in ((0, 1), (1, 2)):  # g-r and r-i
        image_colour = -2.5 * np.log10(flux[:, j] / flux[:, k])
        cat_colour = -2.5 * np.log10(cf[:, j] / cf[:, k])
        assert np.max(np.abs(image_colour - cat_colour)) < 0.02


def test_bulge_is_redder_than_disc(cat, clean):
    bt = np.asarray(cat["bulge_frac"])
    star_forming = ~np.asarray(cat["quenched"]) & (bt > 0.1) & (bt < 0.9)
    assert star_forming.sum() >= 20
    colour = lambda f: -2.5 * np.log10(f[:, 0] / f[:, 1])  # noqa: E731
    # Components: the bulge is redder in most star-forming galaxies, and r-band B/T is
    # exactly the catalogue's.
    redder = colour(clean.bulge_flux) > colour(clean.disc_flux)
    assert redder[star_forming].mean() > 0.8
    np.testing.assert_allclose(
        clean.bulge_flux[:, 1] / (clean.bulge_flux[:, 1] + clean.disc_flux[:, 1]), bt
    )
    # Images: the centre (bulge light) is redder than the outskirts.
    inner, outer = [], []
    for im, c in zip(clean.noiseless[star_forming], clean.centres[star_forming]):
        y, x = np.indices(im.shape[1:])
        r = np.hypot(x - c[0], y - c[1])
        inner.append(im[:, r < 2].sum(axis=1))
        outer.append(im[:, (r > 6) & (r < 20)].sum(axis=1))
    gradient = colour(np.array(inner)) - colour(np.array(outer))
    assert np.median(gradient) > 0.05
    # bulge_colour=None: same B/T in every band, no colour gradient.
    flat = make_mock_images(cat[:10], bulge_colour=None, noise=False, full_output=True)
    np.testing.assert_allclose(
        flat.bulge_flux / (flat.bulge_flux + flat.disc_flux),
        np.repeat(np.asarray(cat["bulge_frac"][:10])[:, None], 3, axis=1),
    )


def test_noise_in_empty_corner_matches_request(compact):
    sigma = np.array([0.02, 0.03, 0.05])
    out = make_mock_images(
        compact, size=96, sky_noise=sigma * u.nmgy, full_output=True, random_state=9
    )
    residual = out.images - out.noiseless
    corners = np.concatenate(
        [residual[:, :, :12, :12], residual[:, :, :12, -12:], residual[:, :, -12:, :12],
         residual[:, :, -12:, -12:]],
        axis=2,
    )
    measured = corners.std(axis=(0, 2, 3))
    np.testing.assert_allclose(measured, sigma, rtol=0.03)
    assert np.all(np.abs(out.images[:, :, :12, :12].mean(axis=(0, 2, 3))) < 0.1 * sigma)
    # Source Poisson noise makes the noise larger on the bright centre ...
    c = 96 // 2
    centre_std = residual[:, 1, c - 1 : c + 2, c - 1 : c + 2].std()
    assert centre_std > 1.5 * sigma[1]
    # ... and only there when it is switched off.
    flat = make_mock_images(compact, size=96, sky_noise=sigma, source_noise=False,
                            full_output=True, random_state=9)
    res = flat.images - flat.noiseless
    np.testing.assert_allclose(res[:, 1, c - 8 : c + 8, c - 8 : c + 8].std(), sigma[1], rtol=0.05)


def test_default_noise_follows_sdss_depth():
    out = make_mock_images(one_galaxy(), full_output=True, random_state=0)
    # A point source at the 5σ depth has S/N 5 with PSF-weighted photometry: recompute
    # the noise-equivalent area from a rendered point source.
    point = make_mock_images(
        one_galaxy(r_half_disc=1e-3), size=96, noise=False, full_output=True, max_offset=0.0,
        bulge_colour=None,
    )
    for j, band in enumerate(BANDS):
        psf = point.noiseless[0, j] / point.noiseless[0, j].sum()
        nea = 1.0 / np.sum(psf**2)
        expected = 10 ** (-0.4 * (SDSS_DEPTH_5SIGMA[band] - 22.5)) / (5 * np.sqrt(nea))
        np.testing.assert_allclose(out.sky_noise[j], expected, rtol=0.01)
    # Values as documented: about 0.017, 0.026, 0.042 nmgy per pixel in g, r, i.
    np.testing.assert_allclose(out.sky_noise, [0.0165, 0.0262, 0.0415], rtol=0.03)


def test_sky_noise_from_depth_gaussian_area():
    """For a Gaussian PSF the noise-equivalent area is 4πσ² (plus ~1/12 px² per axis)."""
    fwhm_px = 1.4 / PIXEL
    s2 = (fwhm_px / 2.3548) ** 2 + 1.0 / 12.0
    expected = 10 ** (-0.4 * (22.6 - 22.5)) / (5 * np.sqrt(4 * np.pi * s2))
    got = sky_noise_from_depth(22.6, psf="gaussian")
    np.testing.assert_allclose(got, expected, rtol=0.01)
    # A wider PSF means more sky under a point source: less noise per pixel for the same depth.
    assert sky_noise_from_depth(22.6, 2.0 * u.arcsec) < sky_noise_from_depth(22.6)


def test_sersic_transform_table():
    """The numerical Hankel transform reproduces the analytic exponential transform."""
    log_kappa, ft = _sersic_ft_numeric(1.0)
    kappa = np.exp(log_kappa)
    exact = (1.0 + (kappa / sersic_b(1.0)) ** 2) ** -1.5
    assert np.max(np.abs(ft - exact)) < 1e-5
    # b_n puts half the light inside r_e; the published values (Ciotti & Bertin 1999,
    # Table 1 of Graham & Driver 2005) are b_1 = 1.67835, b_4 = 7.66925.
    for n, published in ((1.0, 1.67835), (4.0, 7.66925)):
        assert abs(sersic_b(n) / gammaincinv(2 * n, 0.5) - 1.0) < 3e-5
        assert sersic_b(n) == pytest.approx(published, abs=1e-5)


def test_neighbours_and_mask(cat):
    sub = cat[:30]
    alone = make_mock_images(sub, noise=False, full_output=True, random_state=3)
    assert not alone.mask.any()
    crowded = make_mock_images(sub, noise=False, full_output=True, random_state=3, neighbours=2.0)
    assert crowded.mask.any()
    extra = crowded.noiseless - alone.noiseless
    assert np.all(extra >= -1e-4)
    assert extra.sum() > 0
    # The mask marks neighbour light above half the sky noise; most centres stay clean.
    threshold = 0.5 * crowded.sky_noise[None, :, None, None] * (1 - 1e-3)
    assert np.all(np.any(extra > threshold, axis=1)[crowded.mask])
    assert crowded.mask[:, 32, 32].mean() < 0.3


def test_size_160_works(cat):
    images = make_mock_images(cat[:5], size=160, random_state=1)
    assert images.shape == (5, 3, 160, 160) and images.dtype == np.float32
    assert np.all(np.isfinite(images))


def test_mock_catalog_with_images():
    opts = dict(size=32, random_state=12, r_limit=17.0, psf="gaussian")
    table, images = mock_catalog_with_images(6, **opts)
    assert len(table) == 6 and images.shape == (6, 3, 32, 32)
    assert np.all(u.Quantity(table["modelMag_r"] - table["extinction_r"]).value < 17.0)
    assert table.meta["images"]["psf"] == "gaussian" and table.meta["images"]["size"] == 32
    again_table, again = mock_catalog_with_images(6, **opts)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_table["objID"], table["objID"])
    with pytest.raises(TypeError):
        mock_catalog_with_images(3, random_state=1, not_an_option=1)


def test_bad_inputs(cat):
    sub = cat[:2]
    with pytest.raises(ValueError, match="size"):
        make_mock_images(sub, size=4)
    with pytest.raises(ValueError, match="bands"):
        make_mock_images(sub, bands=("g", "y"))
    with pytest.raises(ValueError, match="sky_noise"):
        make_mock_images(sub, sky_noise=-1.0)
    with pytest.raises(ValueError, match="psf"):
        make_mock_images(sub, psf="airy")
    with pytest.raises(ValueError, match="bulge_colour"):
        make_mock_images(sub, bulge_colour="blue")
    with pytest.raises(KeyError, match="r_half"):
        make_mock_images(Table({"modelMag_g": [16.0], "modelMag_r": [16.0], "modelMag_i": [16.0],
                                "bulge_frac": [0.2]}), bulge_colour=None)


def test_timing(cat):
    """Print the speed (not asserted tightly: the machine is shared)."""
    table = cat[np.arange(500) % len(cat)]
    make_mock_images(table[:5], random_state=0)  # warm the cached tables
    start = time.perf_counter()
    images = make_mock_images(table, random_state=0)
    elapsed = time.perf_counter() - start
    print(f"\nmake_mock_images: {len(table)} galaxies at 64x64x3 in {elapsed:.2f} s")
    assert images.shape == (500, 3, 64, 64)
    assert elapsed < 30.0
