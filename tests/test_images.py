"""Image inputs (as_image_array, load_images) and ImagePreprocessor."""

import json

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.nddata import CCDData, NDData

from astro_galpost.images import ImagePreprocessor, as_image_array, load_images, resample_images

torch.set_num_threads(1)


def _cube(n=4, h=20, w=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, h, w)).astype(np.float32)


# ----------------------------------------------------------------------------- as_image_array


class TestArrays:
    def test_channel_first(self):
        cube = _cube()
        data, mask = as_image_array(cube, n_rows=4)
        assert data.dtype == np.float32 and mask.dtype == bool
        assert data.shape == mask.shape == (4, 3, 20, 24)
        np.testing.assert_array_equal(data, cube)
        assert not mask.any()

    def test_channel_last(self):
        cube = _cube()
        data, _ = as_image_array(np.moveaxis(cube, 1, -1))
        np.testing.assert_array_equal(data, cube)

    def test_ambiguous_is_channel_first(self):
        cube = _cube(h=10, w=3)  # (N, 3, 10, 3)
        data, _ = as_image_array(cube)
        np.testing.assert_array_equal(data, cube)

    def test_nan_inf_masked_and_zeroed(self):
        cube = _cube().astype(np.float64)
        cube[0, 1, 2, 3] = np.nan
        cube[1, 2, 0, 0] = np.inf
        cube[2, 0, 5, 5] = 1e300  # overflows float32
        data, mask = as_image_array(cube)
        assert mask.sum() == 3
        assert mask[0, 1, 2, 3] and mask[1, 2, 0, 0] and mask[2, 0, 5, 5]
        assert np.all(data[mask] == 0) and np.isfinite(data).all()

    def test_masked_array_and_quantity(self):
        cube = np.ma.masked_array(_cube(), mask=np.zeros((4, 3, 20, 24), bool))
        cube.mask[3, 2, 1, 1] = True
        _, mask = as_image_array(cube)
        assert mask.sum() == 1 and mask[3, 2, 1, 1]
        data, _ = as_image_array(_cube() * u.mgy)
        np.testing.assert_allclose(data, _cube() * 1e9, rtol=1e-6)  # -> nanomaggies

    def test_masked_quantity_keeps_its_mask(self):
        from astropy.utils.masked import Masked

        bad = np.zeros((4, 3, 20, 24), bool)
        bad[1, 0, 2, 3] = True
        data, mask = as_image_array(Masked(_cube() * u.nmgy, mask=bad))
        assert mask[1, 0, 2, 3] and mask.sum() == 1 and data[1, 0, 2, 3] == 0

    def test_usable_images_need_their_centre(self):
        from astro_galpost.images import usable_images

        images, mask = np.ones((4, 3, 40, 40)), np.zeros((4, 3, 40, 40), bool)
        mask[1, :, :, :8] = True  # the frame's edge 12 pixels from the centre: the galaxy is whole
        mask[2, 1, :, :20] = True  # half of the r band off the frame
        images[3] = 0.0  # nothing measured
        assert usable_images(images, mask).tolist() == [True, True, False, False]
        # NaN pixels count as masked
        assert not usable_images(np.where(mask, np.nan, images), np.zeros_like(mask))[2]

    def test_magnitude_images_refused(self):
        # 20 mag per pixel is 10 nmgy, not the 8e9 a linear scaling of the unit gave
        with pytest.raises(u.UnitConversionError, match="logarithmic units .*not magnitudes"):
            as_image_array(np.full((1, 3, 8, 8), 20.0) * u.ABmag)

    @pytest.mark.parametrize(
        "shape, match",
        [
            ((3, 20, 20), "3 dimensions.*images\\[None\\]"),
            ((2, 3, 20, 20, 1), "5 dimensions"),
            ((20, 20), "2 dimensions"),
        ],
    )
    def test_wrong_ndim(self, shape, match):
        with pytest.raises(ValueError, match=match):
            as_image_array(np.zeros(shape))

    @pytest.mark.parametrize("nbands", [2, 4])
    def test_band_count_named(self, nbands):
        with pytest.raises(ValueError, match=f"has {nbands} bands"):
            as_image_array(np.zeros((5, nbands, 32, 32)))
        with pytest.raises(ValueError, match=f"has {nbands} bands"):
            as_image_array(np.zeros((5, 32, 32, nbands)))
        with pytest.raises(ValueError, match=f"has {nbands} bands"):
            as_image_array([np.zeros((nbands, 32, 32))])
        with pytest.raises(ValueError, match=f"{nbands} bands"):
            as_image_array([[np.zeros((32, 32))] * nbands])

    def test_count_mismatch(self):
        with pytest.raises(ValueError, match="5 images given for a table of 7 rows"):
            as_image_array(np.zeros((5, 3, 16, 16)), n_rows=7)

    def test_empty_and_bad_types(self):
        with pytest.raises(ValueError, match="no images"):
            as_image_array([])
        with pytest.raises(TypeError, match="cannot read images"):
            as_image_array(42)
        with pytest.raises(TypeError, match="one galaxy"):
            as_image_array({"g": np.zeros((4, 4)), "r": np.zeros((4, 4)), "i": np.zeros((4, 4))})


class TestNDData:
    def test_list_of_cubes_with_mask(self):
        cube = _cube(n=2)
        mask0 = np.zeros((3, 20, 24), bool)
        mask0[1, 4, 4] = True
        items = [NDData(cube[0], mask=mask0), NDData(cube[1])]
        data, mask = as_image_array(items, n_rows=2)
        np.testing.assert_array_equal(data[1], cube[1])
        assert mask.sum() == 1 and mask[0, 1, 4, 4] and data[0, 1, 4, 4] == 0

    def test_channel_last_ndarray_items(self):
        cube = _cube(n=2)
        data, _ = as_image_array([np.moveaxis(c, 0, -1) for c in cube])
        np.testing.assert_array_equal(data, cube)

    def test_per_band_dicts_and_lists(self):
        cube = _cube(n=2)
        dicts = [{b: NDData(c[k]) for k, b in enumerate("gri")} | {"u": NDData(c[0] * 0)} for c in cube]
        data, _ = as_image_array(dicts)
        np.testing.assert_array_equal(data, cube)  # ordered g, r, i; u ignored
        data, _ = as_image_array([[c[0], c[1], c[2]] for c in cube])
        np.testing.assert_array_equal(data, cube)
        with pytest.raises(ValueError, match="missing i"):
            as_image_array([{"g": cube[0, 0], "r": cube[0, 1]}])

    def test_ccddata_nanomaggy_with_mask(self):
        cube = _cube(n=2)
        mask = np.zeros((3, 20, 24), bool)
        mask[2, 0, :] = True
        items = [CCDData(cube[0], unit="nanomaggy", mask=mask), CCDData(cube[1] * 1e-9, unit=u.mgy)]
        data, bad = as_image_array(items)
        np.testing.assert_allclose(data[1], cube[1], rtol=1e-6)  # maggies -> nanomaggies
        assert bad[0, 2, 0].all() and bad.sum() == 24
        # spectral flux densities join through the AB zero point (1 nmgy = 3.631 uJy)
        data, _ = as_image_array([NDData(cube[0], unit=u.nmgy), NDData(cube[1] * 3.631, unit=u.uJy)])
        np.testing.assert_allclose(data[1], cube[1], rtol=1e-5)

    def test_same_unit_counts_kept(self):
        cube = _cube(n=2)
        data, _ = as_image_array([CCDData(c, unit="adu") for c in cube])
        np.testing.assert_array_equal(data, cube)

    def test_mixed_units_rejected(self):
        cube = _cube(n=2)
        with pytest.raises(u.UnitConversionError, match="incompatible units"):
            as_image_array([CCDData(cube[0], unit="nanomaggy"), CCDData(cube[1], unit="adu")])
        with pytest.raises(u.UnitConversionError, match="others have none"):
            as_image_array([NDData(cube[0], unit="nanomaggy"), NDData(cube[1])])
        with pytest.raises(u.UnitConversionError, match="incompatible"):
            as_image_array([[NDData(plane, unit=unit) for plane, unit in zip(cube[0], ["adu", "nmgy", "adu"])]])

    def test_mixed_sizes(self):
        with pytest.raises(ValueError, match="differ in size.*20x24.*image 1 is 16x16"):
            as_image_array([NDData(np.zeros((3, 20, 24))), NDData(np.zeros((3, 16, 16)))])
        with pytest.raises(ValueError, match="band images differ in size"):
            as_image_array([[np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((9, 8))]])

    def test_4d_nddata(self):
        cube = _cube()
        data, _ = as_image_array(NDData(cube, unit="nanomaggy"))
        np.testing.assert_array_equal(data, cube)


class TestFitsCube:
    def test_cube_paths(self, tmp_path):
        cube = _cube(n=3)
        path = tmp_path / "cube.fits"
        hdu = fits.PrimaryHDU(cube * 1e-9)
        hdu.header["BUNIT"] = "maggy"
        mask = np.zeros(cube.shape, np.uint8)
        mask[1, 0, 3, 3] = 1
        fits.HDUList([hdu, fits.ImageHDU(mask, name="MASK")]).writeto(path)
        data, bad = as_image_array(path, n_rows=3)
        np.testing.assert_allclose(data, np.where(mask, 0, cube), rtol=1e-6)
        assert bad.sum() == 1 and bad[1, 0, 3, 3]
        single = tmp_path / "one.fits"
        fits.writeto(single, cube[0])
        data, _ = as_image_array(str(single), n_rows=1)
        np.testing.assert_array_equal(data[0], cube[0])

    def test_bad_cube_and_missing_file(self, tmp_path):
        path = tmp_path / "four.fits"
        fits.writeto(path, np.zeros((2, 4, 8, 8), np.float32))
        with pytest.raises(ValueError, match="4 bands"):
            as_image_array(path)
        missing = tmp_path / "nothere.fits"
        with pytest.raises(FileNotFoundError, match="nothere.fits"):
            as_image_array(missing)


# ----------------------------------------------------------------------------- load_images


class TestLoadImages:
    def test_real_sdss_jpegs(self, shared_data):
        from PIL import Image

        files = sorted((shared_data / "sdss_gri_jpeg_oh" / "images").glob("*.jpg"))[:3]
        if len(files) < 3:
            pytest.skip("shared SDSS JPEG composites not found")
        images = load_images(files)
        assert images.shape == (3, 3, 128, 128) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        rgb = np.asarray(Image.open(files[0]).convert("RGB"), np.float32) / 255.0
        # SDSS composites: i -> R, r -> G, g -> B
        np.testing.assert_allclose(images[0, 0], rgb[..., 2])
        np.testing.assert_allclose(images[0, 2], rgb[..., 0])
        # galaxies are centred: the middle is brighter than the corners in every band
        centre = images[:, :, 56:72, 56:72].mean(axis=(2, 3))
        corners = images[:, :, :16, :16].mean(axis=(2, 3))
        assert (centre > corners).all()
        small = load_images([str(f) for f in files], size=64)
        assert small.shape == (3, 3, 64, 64)
        np.testing.assert_allclose(small.mean(axis=(2, 3)), images.mean(axis=(2, 3)), atol=0.01)

    def test_png_channel_order(self, tmp_path):
        from PIL import Image

        rgb = np.zeros((10, 12, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # R=i, G=r, B=g
        Image.fromarray(rgb).save(tmp_path / "a.png")
        (image,) = load_images(tmp_path / "a.png")
        np.testing.assert_allclose(image[:, 0, 0], [50 / 255, 100 / 255, 200 / 255], rtol=1e-6)

    def test_fits_cubes_and_per_band_files(self, tmp_path):
        cube = _cube(n=2, h=16, w=16)
        paths = []
        for k in range(2):
            paths.append(tmp_path / f"gal{k}.fits")
            fits.writeto(paths[-1], cube[k])
        np.testing.assert_array_equal(load_images(paths), cube)
        bands = {}
        for j, b in enumerate("gri"):
            hdu = fits.PrimaryHDU(cube[0, j] * 1e-9)
            hdu.header["BUNIT"] = "maggy"
            bands[b] = tmp_path / f"gal0-{b}.fits"
            hdu.writeto(bands[b])
        np.testing.assert_allclose(load_images([bands])[0], cube[0], rtol=1e-6)
        np.testing.assert_allclose(load_images([(bands["g"], bands["r"], bands["i"])])[0], cube[0], rtol=1e-6)
        with pytest.raises(ValueError, match="missing i"):
            load_images([{"g": bands["g"], "r": bands["r"]}])

    def test_header_band_order_and_units(self, tmp_path):
        """A cube whose header says its planes are i, r, g loads as g, r, i; a BUNIT astropy does not
        know is refused by name (it once loaded without a unit, beside images 10**9 brighter)."""
        cube = _cube(n=1, h=8, w=8)[0]
        hdu = fits.PrimaryHDU(cube[::-1])
        hdu.header["BANDS"], hdu.header["BUNIT"] = "i,r,g", "nanomaggies"
        hdu.writeto(tmp_path / "irg.fits")
        (image,) = load_images([tmp_path / "irg.fits"])
        np.testing.assert_allclose(image, cube)
        hdu.header["BANDS"] = "u,g,r"
        hdu.writeto(tmp_path / "ugr.fits")
        with pytest.raises(ValueError, match="ugr.fits: its planes are the bands u, g, r"):
            load_images([tmp_path / "ugr.fits"])
        hdu.header["BANDS"], hdu.header["BUNIT"] = "g,r,i", "furlongs"
        hdu.writeto(tmp_path / "odd.fits")
        with pytest.raises(ValueError, match="odd.fits: BUNIT 'furlongs' is not a unit"):
            load_images([tmp_path / "odd.fits"])

    def test_grey_or_16_bit_pictures_refused(self, tmp_path):
        from PIL import Image

        Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "deep.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "grey.jpg")
        for name, mode in (("deep.png", "I;16"), ("grey.jpg", "L")):
            with pytest.raises(ValueError, match=f"{name} is a '{mode}' image"):
                load_images([tmp_path / name])

    def test_sizes_and_resampling(self, tmp_path):
        fits.writeto(tmp_path / "a.fits", np.ones((3, 16, 16), np.float32))
        big = np.ones((3, 32, 32), np.float32)
        big[:, 0, 0] = np.nan
        fits.writeto(tmp_path / "b.fits", big)
        with pytest.raises(ValueError, match="a.fits is 16x16 but .*b.fits is 32x32; pass size="):
            load_images([tmp_path / "a.fits", tmp_path / "b.fits"])
        out = load_images([tmp_path / "a.fits", tmp_path / "b.fits"], size=24)
        assert out.shape == (2, 3, 24, 24)
        assert np.nanmax(np.abs(out - 1)) < 1e-6  # NaN did not bleed into its neighbours

    def test_missing_and_unreadable(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope.jpg"):
            load_images([tmp_path / "nope.jpg"])
        bad = tmp_path / "bad.jpg"
        bad.write_text("not an image")
        with pytest.raises(OSError, match="bad.jpg"):
            load_images([bad])
        with pytest.raises(FileNotFoundError, match="gone-r.fits"):
            load_images([(tmp_path / "gone-r.fits",) * 3])

    def test_no_mixing_fits_and_jpeg(self, tmp_path):
        from PIL import Image

        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.jpg")
        fits.writeto(tmp_path / "b.fits", np.zeros((3, 8, 8), np.float32))
        with pytest.raises(ValueError, match="different scales"):
            load_images([tmp_path / "a.jpg", tmp_path / "b.fits"])

    def test_path_list_through_as_image_array(self, tmp_path):
        fits.writeto(tmp_path / "a.fits", np.ones((3, 8, 8), np.float32))
        data, mask = as_image_array([str(tmp_path / "a.fits")], n_rows=1)
        assert data.shape == (1, 3, 8, 8) and not mask.any()


# ----------------------------------------------------------------------------- preprocessing


def _galaxies(n=6, size=96, seed=1):
    """Sky noise of different levels per band plus a centred exponential blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-np.hypot(xx, yy) / 4.0)
    scale = np.array([1.0, 3.0, 10.0])[:, None, None]  # bands differ by 10x
    out = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        out[k] = scale * (0.01 * rng.normal(size=(3, size, size)) + rng.uniform(0.5, 2.0) * blob + 0.05)
    return out


class TestPreprocessor:
    @pytest.mark.parametrize("size", [160, 64])
    def test_sizes_finite(self, size):
        images = _galaxies(n=3)
        pre = ImagePreprocessor(size=size).fit(images)
        out = pre.transform(images)
        assert out.shape == (3, 3, size, size) and out.dtype == np.float32
        assert np.isfinite(out).all()

    def test_robust_standardised_per_band(self):
        images = _galaxies()
        out = ImagePreprocessor(size=64, scaling="robust").fit_transform(images)
        for b in range(3):
            band = out[:, b].ravel()
            med = np.median(band)
            sigma = 1.4826 * np.median(np.abs(band - med))
            assert abs(med) < 0.1 and 0.8 < sigma < 1.25, (b, med, sigma)

    def test_arcsinh_range_per_band(self):
        images = _galaxies()
        pre = ImagePreprocessor(size=64).fit(images)
        out = pre.transform(images)
        for b in range(3):
            band = out[:, b]
            assert abs(np.median(band)) < 0.05  # sky near 0
            assert 0.7 < np.percentile(band, 99.9) < 1.5  # bright galaxy pixels near 1
            assert band.min() > -0.5
        # per-band statistics scale with the bands (x1, x3, x10)
        np.testing.assert_allclose(pre.median_ / pre.median_[0], [1, 3, 10], rtol=0.1)
        np.testing.assert_allclose(pre.softening_, pre.noise_)

    def test_crop_vs_resample(self):
        images = _galaxies(n=2, size=100)
        crop = ImagePreprocessor(size=64, scaling="none", resize="crop").transform(images)
        np.testing.assert_array_equal(crop, images[:, :, 18:82, 18:82])
        # a galaxy centred at (H-1)/2 stays centred at (size-1)/2 after cropping
        peak = np.unravel_index(np.argmax(crop[0, 0]), (64, 64))
        assert all(abs(p - 31.5) <= 0.5 for p in peak)
        res = ImagePreprocessor(size=50, scaling="none").transform(images)
        assert res.shape == (2, 3, 50, 50)
        # antialiased 4x downsampling averages noise over many pixels (plain bilinear: only 2x2)
        noise = np.random.default_rng(3).normal(size=(1, 3, 128, 128)).astype(np.float32)
        small = ImagePreprocessor(size=32, scaling="none").transform(noise)
        assert small.std() < 0.3
        # crop of a smaller image pads with masked (zero) pixels
        padded = ImagePreprocessor(size=128, scaling="none", resize="crop").transform(images)
        assert (padded[:, :, :14] == 0).all() and (padded[:, :, 14:114, 14:114] == images).all()

    def test_non_square_resample_keeps_aspect(self):
        images = np.zeros((1, 3, 40, 80), np.float32)
        images[:, :, :, 20:60] = 1.0  # the central 40x40 square
        out = ImagePreprocessor(size=20, scaling="none").transform(images)
        np.testing.assert_allclose(out, 1.0)

    def test_masked_pixels_zero(self):
        images = _galaxies(n=2, size=64)
        mask = np.zeros(images.shape, bool)
        mask[:, 1, 10:20, 10:20] = True
        images[0, 2, 40, 40] = np.nan
        pre = ImagePreprocessor(size=64, scaling="robust").fit(images, mask)
        out = pre.transform(images, mask)
        assert (out[:, 1, 10:20, 10:20] == 0).all() and out[0, 2, 40, 40] == 0
        assert np.isfinite(out).all()
        with pytest.raises(ValueError, match="mask has shape"):
            pre.transform(images, mask[:1])

    @pytest.mark.parametrize(
        "kwargs",
        [
            dict(scaling="arcsinh"),
            dict(scaling="robust"),
            dict(softening=0.05),
            dict(softening=[0.01, 0.03, 0.1]),
            dict(scaling="none", resize="crop"),
        ],
    )
    def test_config_round_trip(self, kwargs):
        images = _galaxies(n=3, size=70)
        pre = ImagePreprocessor(size=48, **kwargs).fit(images)
        config = json.loads(json.dumps(pre.get_config()))
        arrays = {k: np.array(v) for k, v in pre.get_arrays().items()}
        assert all(v.shape == (3,) for v in arrays.values())
        pre2 = ImagePreprocessor.from_config(config, arrays)
        assert pre2.is_fitted
        np.testing.assert_array_equal(pre2.transform(images), pre.transform(images))

    def test_unfitted(self):
        pre = ImagePreprocessor(size=32)
        assert not pre.is_fitted and pre.get_arrays() == {}
        with pytest.raises(RuntimeError, match="not fitted"):
            pre.transform(_galaxies(n=1, size=32))
        assert not ImagePreprocessor.from_config(pre.get_config(), {}).is_fitted
        # "none" needs no statistics
        assert ImagePreprocessor(size=32, scaling="none").transform(_galaxies(n=1, size=40)).shape == (1, 3, 32, 32)

    @pytest.mark.parametrize(
        "size, exc", [(8, ValueError), (15, ValueError), (64.0, TypeError), ("64", TypeError), (True, TypeError)]
    )
    def test_rejected_size(self, size, exc):
        with pytest.raises(exc, match="size"):
            ImagePreprocessor(size=size)

    def test_rejected_options(self):
        assert ImagePreprocessor(size=16).size == 16
        assert ImagePreprocessor(size=np.int64(64)).get_config()["size"] == 64
        with pytest.raises(ValueError, match="scaling must be one of"):
            ImagePreprocessor(scaling="log")
        with pytest.raises(ValueError, match="resize must be"):
            ImagePreprocessor(resize="pad")
        with pytest.raises(ValueError, match="softening"):
            ImagePreprocessor(softening=[1.0, 2.0])
        with pytest.raises(ValueError, match="softening"):
            ImagePreprocessor(softening=-1.0)

    def test_accepts_any_input_form(self):
        images = _galaxies(n=2, size=40)
        pre = ImagePreprocessor(size=32).fit(images)
        a = pre.transform(images)
        b = pre.transform(np.moveaxis(images, 1, -1))
        c = pre.transform([NDData(im) for im in images])
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)

    def test_fit_subsamples_evenly(self):
        images = _galaxies(n=6, size=32)
        few = ImagePreprocessor(size=32, max_fit_images=2).fit(images).get_arrays()
        ref = ImagePreprocessor(size=32).fit(images[[0, 5]]).get_arrays()
        for name in ref:
            np.testing.assert_array_equal(few[name], ref[name])

    def test_quantised_jpeg_like_sky(self):
        # JPEG skies are often all one value: the MAD is 0 and must not give inf/NaN
        images = np.zeros((2, 3, 32, 32), np.float32)
        images[:, :, 14:18, 14:18] = 0.8
        out = ImagePreprocessor(size=32).fit_transform(images)
        assert np.isfinite(out).all() and out.max() > 0.5

    def test_linear_scaling(self):
        rng = np.random.default_rng(3)
        images = rng.uniform(0.0, 0.05, (6, 3, 32, 32)).astype(np.float32)
        images[:, :, 12:20, 12:20] += np.array([0.3, 0.5, 0.7], np.float32)[None, :, None, None]
        pre = ImagePreprocessor(size=32, scaling="linear").fit(images)
        out = pre.transform(images)
        # an affine map per band: (x - median) / upper, the sky near 0 and the bright pixels near 1
        for b in range(3):
            np.testing.assert_allclose(out[:, b], (images[:, b] - pre.median_[b]) / pre.upper_[b], atol=1e-5)
        assert abs(np.median(out)) < 0.05 and 0.8 < out.max() < 1.2

    def test_auto_scaling_choice_and_round_trip(self):
        rng = np.random.default_rng(4)
        composite = rng.integers(0, 256, (4, 3, 32, 32)).astype(np.float32) / 255  # JPEG-like, in [0, 1]
        fluxes = rng.normal(0.0, 0.01, (4, 3, 32, 32)).astype(np.float32)  # sky-subtracted fluxes
        fluxes[:, :, 14:18, 14:18] += 3.0
        auto_jpeg = ImagePreprocessor(size=32, scaling="auto").fit(composite)
        auto_flux = ImagePreprocessor(size=32, scaling="auto").fit(fluxes)
        assert auto_jpeg.scaling_ == "linear" and auto_flux.scaling_ == "arcsinh"
        saturated = np.where(composite > 0.5, np.float32(1.0000002), composite)  # float32 resampling's overshoot
        assert ImagePreprocessor(size=32, scaling="auto").fit(saturated).scaling_ == "linear"
        np.testing.assert_array_equal(
            auto_flux.transform(fluxes), ImagePreprocessor(size=32, scaling="arcsinh").fit(fluxes).transform(fluxes)
        )
        config = json.loads(json.dumps(auto_jpeg.get_config()))
        rebuilt = ImagePreprocessor.from_config(config, auto_jpeg.get_arrays())
        assert rebuilt.scaling == "auto" and rebuilt.scaling_ == "linear"
        # the choice is kept: new images outside [0, 1] do not switch the scaling
        np.testing.assert_array_equal(rebuilt.transform(fluxes), auto_jpeg.transform(fluxes))
        with pytest.raises(ValueError, match="concrete scaling"):
            ImagePreprocessor.from_config({**config, "fitted_scaling": "auto"}, auto_jpeg.get_arrays())

    def test_resample_images_nan(self):
        images = np.ones((1, 3, 40, 40), np.float32)
        images[0, 0, :20] = np.nan
        out = resample_images(images, 20)
        assert np.isnan(out[0, 0, :9]).all() and np.isfinite(out[0, 0, 11:]).all()
        np.testing.assert_allclose(out[np.isfinite(out)], 1.0)


# ----------------------------------------------------------------------------- colour_composites


class TestColourComposites:
    def test_band_to_channel_and_scale(self, tmp_path):
        from PIL import Image

        from astro_galpost.images import colour_composites

        cube = np.zeros((3, 3, 8, 8), np.float32)
        cube[0, 0, 4, 4] = 1.0  # g only: blue in the picture, channel 0 (g) here
        cube[1, :, 4, 4] = 1.0  # equal flux in every band: grey
        cube[2, :, 4, 4] = 1e6  # far beyond the stretch: saturated white
        out = colour_composites(cube)
        assert out.shape == (3, 3, 8, 8) and out.dtype == np.float32
        assert out[0, 0, 4, 4] > 0 and out[0, 1:, 4, 4].max() == 0.0
        assert out[1, 0, 4, 4] == out[1, 1, 4, 4] == out[1, 2, 4, 4] > 0
        np.testing.assert_array_equal(out[2, :, 4, 4], 1.0)
        np.testing.assert_array_equal(out[:, :, 0, 0], 0.0)  # no flux: black
        np.testing.assert_array_equal(out * 255, np.round(out * 255))  # 8-bit levels, like a JPEG
        # written as an SDSS-style PNG (i -> R, r -> G, g -> B) and read back: the same array
        rgb = np.round(out[0, ::-1].transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "g.png")
        np.testing.assert_allclose(load_images(tmp_path / "g.png")[0], out[0], atol=1e-6)

    def test_masked_pixels_are_black_and_bad_arguments(self):
        from astro_galpost.images import colour_composites

        cube = np.ones((1, 3, 4, 4), np.float32)
        cube[0, :, 1, 1] = np.nan
        out = colour_composites(cube)
        np.testing.assert_array_equal(out[0, :, 1, 1], 0.0)
        assert (out[0, :, 0, 0] > 0).all()
        with pytest.raises(ValueError, match="stretch"):
            colour_composites(cube, stretch=0)
