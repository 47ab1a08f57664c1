"""The whole image path on a real galaxy: SDSS frames → make_cutouts → VAE features → posterior.

RESOLVE galaxy rf0698 lies in SDSS field 2820/3/122 (``sdss_frames/`` of the shared data),
with its photometry in ``catalogs/resolve_galaxies_in_frames.csv``. No real set joins
images with labels, so the VAE and the posterior are trained (tiny) on the mock
catalog with images, which are in the same units as the real cutouts (nanomaggies);
the real galaxy is then inferred from its own cutout and photometry.
"""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import mock_catalog_with_images
from astro_galpost.encoders import PhotometryEncoder, VAEEncoder
from astro_galpost.images import make_cutouts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32
FIELD = "002820-3-0122"
F_STAR = SkyCoord(38.3018, -0.13392, unit="deg")  # an SDSS spectroscopic F star in the same field
#: Magnitude error assumed for the RESOLVE photometry (the catalog extract gives none).
MAG_ERR = 0.05


@pytest.fixture(scope="module")
def rf0698(shared_data, sdss_frame_hdus):
    """rf0698's catalog row and the gri cutouts of it and of the F star, from the real frames."""
    catalog = shared_data / "sdss_frames" / "catalogs" / "resolve_galaxies_in_frames.csv"
    if not catalog.exists():
        pytest.skip(f"{catalog.name} not found in the shared data")
    frames = sdss_frame_hdus  # as read from the frame files (decompressed once per session: bz2 takes seconds)
    rows = Table.read(catalog, format="ascii.csv")
    row = rows[(rows["resolve_name"] == "rf0698") & (rows["frame_file"] == f"frame-g-{FIELD}.fits.bz2")]
    table = Table({f"modelMag_{b}": [float(row[f"{b}mag"][0])] for b in "ugriz"})
    for b in "ugriz":
        table[f"modelMagErr_{b}"] = [MAG_ERR]
    coords = SkyCoord([float(row["radeg"][0]), F_STAR.ra.deg], [float(row["dedeg"][0]), F_STAR.dec.deg], unit="deg")
    cube, mask, info = make_cutouts(frames, coords, SIZE)
    return table, cube, mask, info


@pytest.fixture(scope="module")
def trained(tiny):
    """A tiny VAE and image + photometry posterior of stellar mass, trained on mock galaxies."""
    table, images = mock_catalog_with_images(300, size=SIZE, random_state=0)
    vae = VAEEncoder(image_size=SIZE, latent_dim=8, channels=(8, 16, 32), max_epochs=3, validation_fraction=0.0,
                     learning_rate=1e-3, batch_size=32, random_state=0, progress=False).fit_images(images)
    # the mock's and RESOLVE's magnitudes are both already free of Galactic extinction
    photometry = PhotometryEncoder([f"modelMag_{b}" for b in "ugriz"], extinction=None)
    gp = GalaxyPosterior(encoder=[vae, photometry], random_state=0, **tiny(["log_mstar"], batch_size=64))
    return vae, gp.fit(table, images=images)


def test_rf0698_cutout_to_posterior(rf0698, trained):
    table, cube, mask, info = rf0698
    vae, gp = trained
    assert cube.shape == (2, 3, SIZE, SIZE) and not mask.any()
    assert info.meta["unit"] == "nmgy"  # the unit of the mock images the models were trained on
    assert not info["edge"][0] and not info["centroid_failed"][0]

    features, usable = vae.transform(table, cube[:1])
    assert features.shape == (1, 2 * vae.latent_dim) and usable.all() and np.isfinite(features).all()
    # orientation averaging: the galaxy turned by 90 degrees gives the same features
    turned, _ = vae.transform(table, np.rot90(cube[:1], 1, axes=(-2, -1)).copy())
    np.testing.assert_allclose(turned, features, atol=1e-3)  # float summation order only

    post = gp.sample(table, images=cube[:1], n_samples=400, random_state=0)
    assert post.usable.all()
    mass = post["log_mstar"].distribution.value[0]
    assert np.isfinite(mass).all() and np.percentile(mass, 84) - np.percentile(mass, 16) > 0

    # the image is used: the same photometry with the F star's cutout gives another posterior
    star = gp.sample(table, images=cube[1:], n_samples=400, random_state=0)
    assert abs(np.median(star["log_mstar"].distribution.value[0]) - np.median(mass)) > 1e-4
    predicted = gp.predict(table, images=cube[:1], n_samples=200)
    assert np.isfinite(predicted["log_mstar_p50"][0])
