"""make_cutouts: synthetic Sérsic galaxies on SDSS-like frames, and real SDSS frames."""

import bz2
import sys
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.modeling.models import Sersic2D
from astropy.nddata import CCDData, NDData
from astropy.wcs import WCS, FITSFixedWarning
from photutils.centroids import centroid_2dg
from scipy.ndimage import gaussian_filter

from astro_galpost.images import as_image_array, make_cutouts

SHAPE = (300, 360)  # (ny, nx) of the synthetic frames
SKY, NOISE = 0.05, 0.01
# Per-band WCS offsets (pixels), like the ~10 px g/r/i offsets of real SDSS frames.
BAND_OFFSETS = {"g": (0.0, 0.0), "r": (2.3, -9.7), "i": (-1.6, -7.9)}
# True galaxy centres in g-frame pixels; the last one sits 8 pixels from the left edge.
TRUTH = np.array([(100.3, 120.7), (250.6, 180.2), (180.1, 60.4), (8.2, 200.5)])
CATALOG_ERROR = (0.8, -0.6)  # catalog positions are off by this much (pixels)


def _sdss_like_wcs(request) -> WCS:
    """The TAN WCS of a real SDSS g frame moved onto the synthetic frame, else one built alike."""
    if request.param == "sdss_header":
        data = request.getfixturevalue("shared_data")
        path = data / "sdss_frames" / "frame-g-002820-3-0122.fits.bz2"
        if not path.exists():
            pytest.skip(f"{path.name} not found")
        with bz2.open(path) as f:  # the header only: no need to decompress the 12 MB image
            header = fits.Header.fromstring(f.read(2880 * 40).split(b"END" + b" " * 77)[0] + b"END" + b" " * 77)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header).celestial
        wcs.wcs.crpix = [SHAPE[1] / 2, SHAPE[0] / 2]
        return wcs
    # SDSS orientation: columns run along Dec, rows along RA, 0.396"/pixel
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [38.33, -0.107]
    wcs.wcs.crpix = [SHAPE[1] / 2, SHAPE[0] / 2]
    scale = 0.396 / 3600
    wcs.wcs.cd = [[0.0, scale], [scale, 0.0]]
    return wcs


@pytest.fixture(scope="module", params=["built", "sdss_header"])
def synthetic(request):
    """g, r, i frames (NDData in nanomaggies) with the same Sérsic galaxies at TRUTH."""
    wcs_g = _sdss_like_wcs(request)
    sky = wcs_g.pixel_to_world(TRUTH[:, 0], TRUTH[:, 1])
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    frames = {}
    for band, (dx, dy) in BAND_OFFSETS.items():
        wcs = wcs_g.deepcopy()
        wcs.wcs.crpix = wcs_g.wcs.crpix + [dx, dy]
        bx, by = wcs.world_to_pixel(sky)
        image = np.zeros(SHAPE)
        for x0, y0 in zip(bx, by):
            image += Sersic2D(amplitude=0.5, r_eff=3.0, n=1.0, x_0=x0, y_0=y0, ellip=0.3, theta=0.6)(xx, yy)
        image = gaussian_filter(image, 1.2) + SKY + rng.normal(0, NOISE, SHAPE)  # PSF, sky, noise
        frames[band] = NDData(image.astype(np.float32), wcs=wcs, unit="nanomaggy")
    catalog = wcs_g.pixel_to_world(TRUTH[:, 0] + CATALOG_ERROR[0], TRUTH[:, 1] + CATALOG_ERROR[1])
    return frames, wcs_g, catalog


def _light_centre(stamp):
    """Centroid (x, y) of the brightest 15x15 region around the centre of a cutout."""
    n = stamp.shape[-1]
    lo = n // 2 - 7
    return np.asarray(centroid_2dg(np.nan_to_num(stamp[lo : lo + 15, lo : lo + 15]))) + lo


class TestSynthetic:
    def test_centred_on_true_position(self, synthetic):
        frames, _, catalog = synthetic
        cube, mask, table = make_cutouts(frames, catalog[:3], 48)
        assert cube.shape == mask.shape == (3, 3, 48, 48) and cube.dtype == np.float32
        assert not mask.any() and not table["edge"].any() and not table["centroid_failed"].any()
        # the refined centre is well within a pixel of the truth (measured: 0.01-0.03 px)
        dist = np.hypot(table["x_centroid"].value - TRUTH[:3, 0], table["y_centroid"].value - TRUTH[:3, 1])
        assert (dist < 0.25).all(), dist
        np.testing.assert_allclose(table["shift"].value, np.hypot(*CATALOG_ERROR), atol=0.3)
        # every band shows the galaxy at the cutout centre: the bands are aligned
        for k in range(3):
            assert abs(table["x_cutout"][k] - 23.5) <= 0.5 + 1e-9
            for b in range(3):
                cx, cy = _light_centre(cube[k, b])
                assert abs(cx - table["x_cutout"][k]) < 0.2 and abs(cy - table["y_cutout"][k]) < 0.2, (k, b)
        assert table.meta["bands"] == ["g", "r", "i"] and table.meta["reference_band"] == "g"
        assert table.meta["unit"] == "nmgy"

    def test_table_columns(self, synthetic):
        frames, wcs_g, catalog = synthetic
        _, _, table = make_cutouts(frames, catalog[0], 32)  # scalar SkyCoord -> one row
        assert len(table) == 1
        for name in ("ra", "dec", "x_input", "y_input", "x_centroid", "y_centroid", "ra_centroid", "dec_centroid",
                     "shift", "x_cutout", "y_cutout", "frac_masked", "bkg_g", "bkg_r", "bkg_i", "edge", "off_frame",
                     "centroid_failed"):
            assert name in table.colnames
        np.testing.assert_allclose(table["ra"][0], catalog[0].ra.deg)
        x, y = wcs_g.world_to_pixel(catalog[0])
        np.testing.assert_allclose([table["x_input"][0], table["y_input"][0]], [x, y])

    def test_background_subtracted(self, synthetic):
        frames, _, catalog = synthetic
        with_bkg, _, table = make_cutouts(frames, catalog[:2], 96, subtract_background=True)
        without, _, _ = make_cutouts(frames, catalog[:2], 96)  # calibrated frames are sky-subtracted already
        rim = np.s_[:, :, :10, :]
        assert abs(np.median(without[rim]) - SKY) < 2e-3
        assert abs(np.median(with_bkg[rim])) < 2e-3
        np.testing.assert_allclose(table["bkg_r"].value, SKY, atol=3e-3)
        # small cutouts use a clipped median
        small, _, table = make_cutouts(frames, catalog[:2], 32, subtract_background=True)
        np.testing.assert_allclose(table["bkg_g"].value, SKY, atol=5e-3)

    def test_edge_is_nan_masked_and_flagged(self, synthetic):
        frames, _, catalog = synthetic
        cube, mask, table = make_cutouts(frames, catalog[3:], 40)
        assert table["edge"][0] and not table["off_frame"][0]
        # the cutout is not shifted to stay inside the frame: the galaxy is still centred...
        assert abs(table["x_cutout"][0] - 19.5) <= 0.5 + 1e-9
        # ...and the columns left of the frame edge (x < 0) are NaN and masked in every band
        x0 = int(round(table["x_centroid"][0] - table["x_cutout"][0]))
        assert x0 < 0
        missing = -x0
        assert np.isnan(cube[0, 0, :, :missing]).all() and mask[0, :, :, : missing - 2].all()
        assert not mask[0, :, :, missing + 3 :].any()
        assert np.isfinite(cube[0][~mask[0]]).all() and np.isnan(cube[0][mask[0]]).all()
        np.testing.assert_allclose(table["frac_masked"][0], mask[0].mean())
        # as_image_array turns the NaNs into zeros and keeps the mask
        data, bad = as_image_array(cube)
        assert (bad == mask).all() and (data[mask] == 0).all()

    def test_no_source_and_big_shift_flagged(self, synthetic):
        frames, wcs_g, catalog = synthetic
        empty = wcs_g.pixel_to_world(300.0, 40.0)  # blank sky
        near = wcs_g.pixel_to_world(TRUTH[0, 0] + 6.0, TRUTH[0, 1])  # 6 px from a galaxy
        _, _, table = make_cutouts(frames, SkyCoord([empty, near]), 32, max_shift=2.0)
        assert table["centroid_failed"].all()
        np.testing.assert_array_equal(table["shift"].value, 0.0)  # kept on the input position
        _, _, table = make_cutouts(frames, near, 32, max_shift=8.0)
        assert not table["centroid_failed"][0] and table["shift"][0] > 4.0

    def test_no_refinement(self, synthetic):
        frames, _, catalog = synthetic
        _, _, table = make_cutouts(frames, catalog[:2], 24, refine_centroid=False)
        np.testing.assert_array_equal(table["x_centroid"], table["x_input"])
        assert not table["centroid_failed"].any()

    def test_off_frame(self, synthetic):
        frames, wcs_g, _ = synthetic
        far = wcs_g.pixel_to_world(-500.0, 100.0)
        cube, mask, table = make_cutouts(frames, far, 24)
        assert table["off_frame"][0] and table["edge"][0] and table["centroid_failed"][0]
        assert mask.all() and np.isnan(cube).all()

    def test_angular_size(self, synthetic):
        frames, _, catalog = synthetic
        cube, _, table = make_cutouts(frames, catalog[:1], 19.8 * u.arcsec, refine_centroid=False)
        assert cube.shape[-1] == 50 and table.meta["size"] == 50
        np.testing.assert_allclose(table.meta["pixel_scale_arcsec"], 0.396, rtol=0.01)

    def test_masked_frame_pixels(self, synthetic):
        frames, wcs_g, catalog = synthetic
        masked, pairs = {}, {}
        for band, frame in frames.items():
            mask = np.zeros(SHAPE, bool)
            x, y = (int(round(float(v))) for v in frame.wcs.world_to_pixel(catalog[1]))
            mask[y + 8, x - 3 : x + 3] = True  # a short bad row above the galaxy
            masked[band] = NDData(frame.data, wcs=frame.wcs, mask=mask, unit=frame.unit)
            pairs[band] = (np.ma.masked_array(frame.data, mask), frame.wcs)
        cube, mask, table = make_cutouts(masked, catalog[1], 32, subtract_background=False)
        assert 6 <= mask[0, 0].sum() <= 6  # the reference band: exactly the bad pixels
        assert 6 <= mask[0, 1].sum() <= 24  # interpolated bands: pixels that draw on them
        assert np.isnan(cube[mask]).all() and not table["edge"][0]
        # a masked array in an (array, WCS) pair: its mask is honoured the same way
        _, pair_mask, _ = make_cutouts(pairs, catalog[1], 32, subtract_background=False)
        assert np.array_equal(pair_mask, mask)

    def test_units(self, synthetic):
        frames, _, catalog = synthetic
        in_maggies = {b: CCDData(f.data * 1e-9, wcs=f.wcs, unit=u.mgy) for b, f in frames.items()}
        a, _, t = make_cutouts(in_maggies, catalog[:1], 24, refine_centroid=False, subtract_background=False)
        b, _, _ = make_cutouts(frames, catalog[:1], 24, refine_centroid=False, subtract_background=False)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert t.meta["unit"] == "nmgy"
        mixed = dict(frames, r=CCDData(frames["r"].data, wcs=frames["r"].wcs, unit="adu"))
        with pytest.raises(u.UnitConversionError, match="incompatible"):
            make_cutouts(mixed, catalog[:1], 24)

    def test_frame_forms(self, synthetic, tmp_path):
        frames, _, catalog = synthetic
        ref, _, _ = make_cutouts(frames, catalog[:1], 24, refine_centroid=False)
        forms = {}
        for band, frame in frames.items():
            hdu = fits.PrimaryHDU(frame.data, header=frame.wcs.to_header())
            hdu.header["BUNIT"] = "nanomaggy"
            if band == "g":
                forms[band] = hdu
            elif band == "r":
                hdu.writeto(tmp_path / "r.fits")
                forms[band] = tmp_path / "r.fits"
            else:
                forms[band] = (frame.data * u.nmgy, frame.wcs)
        got, _, _ = make_cutouts(forms, catalog[:1], 24, refine_centroid=False)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
        # a compressed file, as SDSS serves its frames (frame-r-....fits.bz2)
        (tmp_path / "r.fits.bz2").write_bytes(bz2.compress((tmp_path / "r.fits").read_bytes()))
        got, _, _ = make_cutouts({**forms, "r": tmp_path / "r.fits.bz2"}, catalog[:1], 24, refine_centroid=False)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)

    def test_bad_arguments(self, synthetic, tmp_path):
        frames, _, catalog = synthetic
        with pytest.raises(KeyError, match="no frame given for band.*i"):
            make_cutouts({"g": frames["g"], "r": frames["r"]}, catalog, 24)
        with pytest.raises(TypeError, match="SkyCoord"):
            make_cutouts(frames, (38.3, -0.1), 24)
        with pytest.raises(TypeError, match="size"):
            make_cutouts(frames, catalog, 24.5)
        with pytest.raises(u.UnitsError, match="angle"):
            make_cutouts(frames, catalog, 3 * u.kg)
        with pytest.raises(ValueError, match="reference_band"):
            make_cutouts(frames, catalog, 24, reference_band="z")
        with pytest.raises(FileNotFoundError, match="frame-z.fits"):
            make_cutouts(dict(frames, g=tmp_path / "frame-z.fits"), catalog, 24)
        with pytest.raises(ValueError, match="no WCS"):
            make_cutouts(dict(frames, g=NDData(frames["g"].data)), catalog, 24)
        coarse = frames["r"].wcs.deepcopy()  # 3x3 binned: 1.188" pixels, whose fluxes would be 9x off
        coarse.wcs.cd = coarse.wcs.cd * 3
        with pytest.raises(ValueError, match=r"r frame has pixels of 1.188 arcsec .* off by 0.111"):
            make_cutouts(dict(frames, r=NDData(frames["r"].data, wcs=coarse, unit="nanomaggy")), catalog, 24)

    def test_other_reference_band_and_order(self, synthetic):
        frames, _, catalog = synthetic
        cube, _, table = make_cutouts(frames, catalog[:1], 32, band_order=("i", "r"), reference_band="r")
        assert cube.shape == (1, 2, 32, 32) and table.meta["reference_band"] == "r"
        for b in range(2):
            cx, cy = _light_centre(cube[0, b])
            assert abs(cx - table["x_cutout"][0]) < 0.5 and abs(cy - table["y_cutout"][0]) < 0.5

    def test_without_reproject(self, synthetic, monkeypatch):
        frames, _, catalog = synthetic
        monkeypatch.setitem(sys.modules, "reproject", None)  # makes ``import reproject`` fail
        with pytest.raises(ImportError, match=r"reproject.*'data' extra"):
            make_cutouts(frames, catalog, 24)

    def test_resampled_bands_keep_flux(self, synthetic):
        # the galaxies have the same light in every band: the resampled r and i cutouts hold the
        # flux of the exactly copied g cutout (same pixel scale, so bilinear interpolation conserves it)
        frames, _, catalog = synthetic
        cube, mask, table = make_cutouts(frames, catalog[:3], 40, subtract_background=False)
        assert not mask.any() and table.meta["resample"] == "reproject_interp (bilinear)"
        flux = (cube[:, :, 8:32, 8:32] - SKY).sum(axis=(2, 3))  # the central 24x24 pixels (r_eff: 3 px)
        np.testing.assert_allclose(flux[:, 1:] / flux[:, :1], 1.0, rtol=0.02)  # noise: 0.6% of the flux
        # interpolation averages neighbouring pixels: less noise on the sky, none lost on g
        sky = cube[:, :, :6, :].std(axis=(0, 2, 3))
        assert sky[0] == pytest.approx(NOISE, rel=0.15) and (sky[1:] < sky[0]).all()

    def test_bad_pixel_masks_only_what_draws_on_it(self, synthetic):
        # a band on the very same grid as the reference is copied pixel for pixel by the interpolation,
        # and a bad pixel is lost there alone (not its neighbours, which give it zero weight)
        frames, wcs_g, catalog = synthetic
        data = np.array(frames["g"].data, dtype=np.float64)
        x, y = (round(float(v)) for v in wcs_g.world_to_pixel(catalog[0]))
        data[y + 3, x - 2] = np.nan
        same = {"g": (data, wcs_g), "r": (data.copy(), wcs_g.deepcopy())}
        cube, mask, _ = make_cutouts(same, catalog[0], 24, band_order="gr", subtract_background=False)
        assert mask[0, 0].sum() == 1 and np.array_equal(mask[0, 1], mask[0, 0])
        np.testing.assert_allclose(cube[0, 1][~mask[0, 1]], cube[0, 0][~mask[0, 0]], rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- real SDSS frames

RF0698 = SkyCoord(38.385832, -0.075917, unit="deg")  # RESOLVE galaxy in field 2820/3/122
F_STAR = SkyCoord(38.3018, -0.13392, unit="deg")  # SDSS spectroscopic F star in the same field


@pytest.fixture(scope="module")
def sdss_frames(sdss_frame_hdus):
    """The g, r, i frames of SDSS field 2820/3/122 (decompressed once per session: bz2 takes seconds)."""
    return sdss_frame_hdus


class TestRealSDSS:
    def test_rf0698_and_star_aligned(self, sdss_frames):
        cube, mask, table = make_cutouts(sdss_frames, SkyCoord([RF0698, F_STAR]), 160)
        assert cube.shape == (2, 3, 160, 160) and not mask.any()
        assert table.meta["unit"] == "nmgy"
        # catalog pixel position of rf0698 in g: (1307.01, 1256.93) (resolve_galaxies_in_frames.csv)
        np.testing.assert_allclose([table["x_input"][0], table["y_input"][0]], [1307.01, 1256.93], atol=0.05)
        assert not table["edge"].any() and not table["centroid_failed"].any()
        assert (table["shift"].value < 1.5).all()
        for k in range(2):
            centres = np.array([_light_centre(cube[k, b]) for b in range(3)])
            # g, r and i show the object at the same place (the raw frames differ by ~10 px;
            # measured spread after alignment: 0.12 px for rf0698, 0.07 px for the star)...
            assert np.ptp(centres, axis=0).max() < 0.5, centres
            # ...and at the cutout centre
            np.testing.assert_allclose(centres, [[table["x_cutout"][k], table["y_cutout"][k]]] * 3, atol=1.0)
            # the object is bright against the (subtracted) sky in every band
            assert (cube[k, :, 75:85, 75:85].mean(axis=(1, 2)) > 5 * np.abs(np.median(cube[k], axis=(1, 2)))).all()

    def test_default_keeps_a_large_galaxy_s_light(self, sdss_frames):
        """SDSS frames are sky-subtracted: by default nothing more is taken away. A disc of effective radius
        12 pixels added to a real frame keeps in a 64-pixel cutout's inscribed circle what the circle holds of
        it (94%), and less than 85% with the residual-sky mesh, which takes its outskirts for sky."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = {b: WCS(h.header) for b, h in sdss_frames.items()}
        position = wcs["r"].pixel_to_world(900.0, 600.0)
        injected = {}
        for band, hdu in sdss_frames.items():
            x, y = wcs[band].world_to_pixel(position)
            yy, xx = np.mgrid[: hdu.data.shape[0], : hdu.data.shape[1]]
            disc = Sersic2D(amplitude=1.0, r_eff=12.0, n=1.0, x_0=float(x), y_0=float(y))(xx, yy)
            injected[band] = fits.PrimaryHDU(hdu.data + 100.0 * disc / disc.sum(), hdu.header)
        circle = np.hypot(*(np.mgrid[:64, :64] - 31.5)) < 32
        kept = {}
        for subtract in (False, True):  # False: the default
            options = {"refine_centroid": False, **({"subtract_background": True} if subtract else {})}
            with_disc = make_cutouts(injected, position, 64, **options)[0]
            without = make_cutouts(sdss_frames, position, 64, **options)[0]
            kept[subtract] = np.nansum((with_disc - without)[0, 1][circle]) / 100.0
        # what the circle holds of a circular exponential disc: 1 - (1 + x) exp(-x), x = 32 px / scale length
        x = 32.0 / (12.0 / 1.678)
        assert kept[False] == pytest.approx(1 - (1 + x) * np.exp(-x), abs=0.01)
        assert kept[True] < 0.85

    def test_near_frame_edge(self, sdss_frames):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(sdss_frames["g"].header)
        position = wcs.pixel_to_world(20.0, 700.0)  # 20 px from the left edge of the g frame
        cube, mask, table = make_cutouts(sdss_frames, position, 64, refine_centroid=False)
        assert table["edge"][0] and not table["off_frame"][0]
        assert mask[0, 0, :, :10].all() and np.isnan(cube[0, 0, :, :10]).all()
        assert not mask[0, :, :, 20:].any()
