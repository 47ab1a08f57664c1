"""Short runs on the shared real SDSS files (skipped when they are absent)."""

import numpy as np
import pytest
from astropy.table import Table

from astro_galpost import GalaxyPosterior


def _photoz_on_real_mgs_galaxies(shared_data, **options):
    """Fit a redshift model (``options``: its settings) on 2500 MGS galaxies; check it on 1000 others."""
    table = Table.read(shared_data / "sdss_mgs_photoz_train.csv")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(table))
    train, test = table[order[:2500]], table[order[2500:3500]]
    gp = GalaxyPosterior(targets={"redshift": "zs"}, photometry=list("ugriz"), random_state=0, progress=False,
                         **options).fit(train)
    out = gp.predict(test, n_samples=300)
    z = np.asarray(test["zs"])
    p16, p50, p84 = (np.asarray(out[f"redshift_p{p}"].unmasked.value) for p in (16, 50, 84))
    r2 = 1 - np.sum((p50 - z) ** 2) / np.sum((z - z.mean()) ** 2)
    dz = (p50 - z) / (1 + z)
    nmad = 1.4826 * np.median(np.abs(dz - np.median(dz)))
    coverage = np.mean((z >= p16) & (z <= p84))
    # a short run on half the data: loose bounds that a broken model (R2 ~ 0) cannot pass
    assert r2 > 0.7
    assert nmad < 0.02
    assert 0.55 < coverage < 0.8


def test_photoz_on_real_mgs_galaxies(shared_data):
    """A small network and flow, 25 epochs (about 1 s of CPU; R2 0.80, NMAD 0.016, coverage 0.68 when written)."""
    _photoz_on_real_mgs_galaxies(shared_data, representation=64, hidden=64, max_epochs=25,
                                 flows={"core": ("nsf", {"transforms": 1, "bins": 8, "hidden_features": (32, 32)})})


@pytest.mark.slow
def test_photoz_on_real_mgs_galaxies_default_network(shared_data):
    """The same with the default network and flow, 40 epochs (8 s of CPU)."""
    _photoz_on_real_mgs_galaxies(shared_data, max_epochs=40)


def test_kcorrect_sample_reads_as_sdss():
    from astro_galpost.datasets import load_kcorrect_sample

    t = load_kcorrect_sample()
    assert len(t) == 10000
    r = np.asarray(t["modelMag_r"])
    assert 12 < np.median(r) < 18  # MGS galaxies are brighter than r = 17.77
    assert 0.05 < np.median(t["z"]) < 0.15


def test_kcorrect_sample_magnitudes_are_sdss_asinh_magnitudes():
    """CAS magnitudes are asinh magnitudes: finite at zero and negative flux (in u, 24.63 at f = 0,
    SDSS EDR Table 21), the Pogson magnitudes of bright galaxies."""
    from astropy.table import Table

    from astro_galpost.datasets import kcorrect_sample_path, load_kcorrect_sample

    t = load_kcorrect_sample()
    flux = np.asarray(Table.read(kcorrect_sample_path())["MODELFLUX"], dtype=float)
    for j, band in enumerate("ugriz"):
        mag, f = np.asarray(t[f"modelMag_{band}"]), flux[:, j]
        assert not np.ma.getmaskarray(t[f"modelMag_{band}"]).any()  # negative fluxes too, as in CAS
        bright = f > 100  # brighter than 17.5
        np.testing.assert_allclose(mag[bright], 22.5 - 2.5 * np.log10(f[bright]), atol=2e-4)
    u_flux, u_mag = flux[:, 0], np.asarray(t["modelMag_u"])
    assert (u_flux <= 0).sum() == 12
    slope = 2.5 / np.log(10) * 1e-9 / (2 * 1.4e-10)  # dm/df (per nanomaggy) at f = 0 in u
    near_zero = np.abs(u_flux) < 0.05
    assert near_zero.sum() >= 3
    np.testing.assert_allclose(u_mag[near_zero] + slope * u_flux[near_zero], 24.63, atol=0.01)


def test_high_redshift_galaxies_flagged_out_of_distribution(tiny):
    """Real SDSS galaxies at z > 0.3 given to a model trained at z <= 0.2 are mostly flagged."""
    from astro_galpost.datasets import load_kcorrect_sample

    t = load_kcorrect_sample()
    z = np.asarray(t["z"])
    low, high = t[z <= 0.2], t[z > 0.3]
    assert len(high) >= 50
    gp = GalaxyPosterior(random_state=0, **tiny(["redshift"], max_epochs=2)).fit(low[:3000])
    flagged_high = np.mean(gp.predict(high, n_samples=10)["ood_flag"])
    flagged_low = np.mean(gp.predict(low[3000:4000], n_samples=10)["ood_flag"])
    assert flagged_low < 0.05
    assert flagged_high > 0.5
