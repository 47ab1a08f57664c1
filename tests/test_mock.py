"""Tests of the MOCK SDSS-like catalogue generator (astro_galpost.datasets.mock).

The physics checks have known answers from the relations the mock is built on, and each
could fail if a relation were wired up wrongly.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from astro_galpost.datasets.mock import make_mock_catalog

SENTINEL = -9999.0
LINES = ("h_alpha", "h_beta", "nii_6584", "oiii_5007")
LINE_UNIT = u.Unit(1e-17 * u.erg / (u.s * u.cm**2))


def kewley01(log_n2):
    """Kewley et al. (2001) maximum-starburst line, written out independently here."""
    return 0.61 / (log_n2 - 0.47) + 1.19


def kauffmann03(log_n2):
    return 0.61 / (log_n2 - 0.05) + 1.3


def calzetti_k(lam_um):
    """Calzetti et al. (2000) k(λ) for 0.12-0.63 µm and 0.63-2.2 µm."""
    if lam_um >= 0.63:
        return 2.659 * (-1.857 + 1.040 / lam_um) + 4.05
    return 2.659 * (-2.156 + 1.509 / lam_um - 0.198 / lam_um**2 + 0.011 / lam_um**3) + 4.05


@pytest.fixture(scope="module")
def cat():
    """A flux-limited (MGS-like) mock, shared by the tests of this module."""
    return make_mock_catalog(6000, random_state=11)


@pytest.fixture(scope="module")
def vol_cat():
    """A volume-limited mock (no flux limit), free of Malmquist bias."""
    return make_mock_catalog(4000, random_state=12, r_limit=None)


def col(table, name):
    return np.asarray(table[name], dtype=float)


def test_reproducible_with_same_seed():
    a = make_mock_catalog(300, random_state=5)
    b = make_mock_catalog(300, random_state=5)
    c = make_mock_catalog(300, random_state=6)
    assert a.colnames == b.colnames
    for name in a.colnames:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.array_equal(a["z"], c["z"])
    # A Generator is accepted and used: equal seeds give equal tables.
    g1 = make_mock_catalog(100, random_state=np.random.default_rng(3))
    g2 = make_mock_catalog(100, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(g1["lgm_tot_p50"], g2["lgm_tot_p50"])


def test_columns_units_and_length(cat):
    assert len(cat) == 6000
    expected = (
        ["objID", "ra", "dec", "z", "lgm_tot_p50", "sfr_tot_p50", "oh_p50"]
        + ["velDisp", "velDispErr", "log_mbh", "bptclass"]
        + [f"{p}_{b}" for p in ("modelMag", "modelMagErr", "extinction") for b in "ugriz"]
        + [f"{line}_flux{s}" for line in LINES for s in ("", "_err")]
        + ["bulge_frac", "r_half_disc", "r_half_bulge", "sersic_n_disc", "sersic_n_bulge"]
        + ["axis_ratio", "axis_ratio_bulge", "position_angle"]
    )
    missing = set(expected) - set(cat.colnames)
    assert not missing
    assert cat["objID"].dtype == np.int64
    assert len(np.unique(cat["objID"])) == len(cat)
    # objIDs follow the SDSS bit layout: skyVersion 2, rerun 301.
    ids = np.asarray(cat["objID"])
    assert np.all(ids >> 59 == 2) and np.all((ids >> 48) & 0x7FF == 301)
    for b in "ugriz":
        assert cat[f"modelMag_{b}"].unit == u.mag
        assert cat[f"modelMagErr_{b}"].unit == u.mag
    assert cat["velDisp"].unit == u.km / u.s
    assert cat["velDispErr"].unit == u.km / u.s
    for line in LINES:
        assert cat[f"{line}_flux"].unit == LINE_UNIT
        assert cat[f"{line}_flux_err"].unit == LINE_UNIT
    assert cat["r_half_disc"].unit == u.arcsec
    assert cat["ra"].unit == u.deg
    # Log quantities stay unitless, like a CAS export.
    for name in ("z", "lgm_tot_p50", "sfr_tot_p50", "oh_p50", "log_mbh"):
        assert cat[name].unit is None
    assert cat.meta["mock"] is True
    for name in cat.colnames:
        if cat[name].dtype.kind == "f":
            assert np.all(np.isfinite(cat[name])), name


def test_flux_limit_and_mgs_like_distributions(cat):
    r_dered = col(cat, "modelMag_r") - col(cat, "extinction_r")
    assert r_dered.max() < 17.77
    # The limit binds: many galaxies lie within 0.3 mag of it.
    assert np.mean(r_dered > 17.47) > 0.2
    z = col(cat, "z")
    assert z.min() >= 0.01 and z.max() <= 0.3
    assert 0.08 < np.median(z) < 0.12
    assert np.mean((z > 0.02) & (z < 0.25)) > 0.95
    logm = col(cat, "lgm_tot_p50")
    assert 10.4 < np.median(logm) < 11.0
    assert np.percentile(logm, 2) > 8.5 and np.percentile(logm, 99.5) < 12.0
    # A stricter limit is honoured too.
    bright = make_mock_catalog(200, random_state=2, r_limit=16.0)
    assert np.all(col(bright, "modelMag_r") - col(bright, "extinction_r") < 16.0)


def test_magnitude_errors_are_sdss_like(cat):
    r = col(cat, "modelMag_r")
    near17 = (r > 16.5) & (r < 17.5)
    err_r = np.median(col(cat, "modelMagErr_r")[near17])
    err_u = np.median(col(cat, "modelMagErr_u")[near17])
    assert 0.003 < err_r < 0.012
    assert err_u > 2 * err_r
    # Fainter galaxies have larger errors.
    assert np.median(col(cat, "modelMagErr_r")[r > 17.3]) > np.median(
        col(cat, "modelMagErr_r")[r < 16.0]
    )


def test_main_sequence_slope_recovered(vol_cat):
    sf = ~np.asarray(vol_cat["quenched"])
    logm = col(vol_cat, "lgm_true")[sf]
    z = col(vol_cat, "z")[sf]
    sfr = col(vol_cat, "sfr_true")[sf]
    design = np.column_stack([logm - 10.0, np.log10((1 + z) / 1.1), np.ones_like(z)])
    slope, _, intercept = np.linalg.lstsq(design, sfr, rcond=None)[0]
    assert slope == pytest.approx(0.76, abs=0.04)
    assert intercept == pytest.approx(-0.1, abs=0.04)
    resid = sfr - design @ np.array([0.76, 2.8, -0.1])
    assert np.std(resid) == pytest.approx(0.3, abs=0.03)



def test_passive_peak_two_dex_below_main_sequence(vol_cat):
    """Brinchmann et al. (2004): passive galaxies near sSFR = 1e-12 /yr, ~2 dex below."""
    q = np.asarray(vol_cat["quenched"])
    log_ssfr = col(vol_cat, "sfr_true") - col(vol_cat, "lgm_true")
    assert np.median(log_ssfr[q]) == pytest.approx(-12.0, abs=0.05)
    assert np.std(log_ssfr[q]) == pytest.approx(0.4, abs=0.04)
    massive = col(vol_cat, "lgm_true") > 10.3
    gap = np.median(log_ssfr[massive & ~q]) - np.median(log_ssfr[massive & q])
    assert 1.6 < gap < 2.2


def test_quenched_fraction_rises_with_mass(vol_cat):
    logm = col(vol_cat, "lgm_tot_p50")
    q = np.asarray(vol_cat["quenched"])
    low, high = q[logm < 9.5].mean(), q[logm > 10.8].mean()
    assert low < 0.1 and high > 0.6


def test_metallicity_rises_with_mass_and_only_for_star_forming(cat):
    logm = col(cat, "lgm_tot_p50")
    oh = col(cat, "oh_p50")
    ok = oh != SENTINEL
    medians = []
    for lo in (9.0, 9.5, 10.0, 10.5):
        sel = ok & (logm >= lo) & (logm < lo + 0.5)
        assert sel.sum() > 30
        medians.append(np.median(oh[sel]))
        x = lo + 0.25
        tremonti = -1.492 + 1.847 * x - 0.08026 * x**2
        assert medians[-1] == pytest.approx(tremonti, abs=0.08)
    assert np.all(np.diff(medians) > 0)
    # Measured only for confidently star-forming spectra, and missing for a few of them.
    bpt = np.asarray(cat["bptclass"])
    assert np.all(bpt[ok] == 1)
    assert 0.005 < np.mean(~ok[bpt == 1]) < 0.08
    assert np.mean(ok[np.asarray(cat["quenched"])]) < 0.02
    assert np.all(oh[~ok] == SENTINEL)


def test_mbh_from_sigma_is_exact_and_sentinels(cat):
    vd = col(cat, "velDisp")
    mbh = col(cat, "log_mbh")
    has = vd > 0
    np.testing.assert_allclose(
        mbh[has], 8.32 + 5.64 * np.log10(vd[has] / 200.0), rtol=0, atol=1e-10
    )
    assert np.all(mbh[~has] == SENTINEL)
    assert np.all(col(cat, "velDispErr")[~has] == 0)
    assert np.all(col(cat, "velDispErr")[has] > 0)
    # Missing for a realistic 30-50 % of the MGS, and not at random: only early-type
    # spectra with 70 < σ < 420 km/s are measured.
    assert 0.3 < np.mean(~has) < 0.5
    assert np.all((vd[has] > 70) & (vd[has] < 420))
    q = np.asarray(cat["quenched"])
    assert np.mean(has[q]) > 0.8 and np.mean(has[~q]) < 0.4
    logm = col(cat, "lgm_tot_p50")
    assert np.mean(~has[logm < 10.0]) > 3 * np.mean(~has[logm > 10.8])
    assert np.median(vd[has & (logm > 11)]) > 1.2 * np.median(vd[has & (logm < 10.5)])


def test_fundamental_metallicity_relation(vol_cat):
    """At fixed M*, O/H falls with SFR as the Mannucci et al. (2010) FMR says."""
    sf = ~np.asarray(vol_cat["quenched"])
    logm, sfr = col(vol_cat, "lgm_true"), col(vol_cat, "sfr_true")
    sel = sf & (logm > 9.6) & (logm < 10.6)
    design = np.column_stack([logm[sel] - 10.0, sfr[sel], np.ones(sel.sum())])
    slope_sfr = np.linalg.lstsq(design, col(vol_cat, "oh_true")[sel], rcond=None)[0][1]
    # d(O/H)/d(log SFR) of Mannucci et al. (2010, eq. 2) averaged over the selection.
    m, s = logm[sel] - 10.0, sfr[sel]
    expected = np.mean(-0.14 + 0.12 * m - 0.108 * s)
    assert slope_sfr == pytest.approx(expected, abs=0.03)
    assert expected < -0.1


def test_label_noise_has_mpa_jhu_widths(cat):
    def spread(noisy, true, rows):
        return np.std(col(cat, noisy)[rows] - col(cat, true)[rows])

    every = np.ones(len(cat), dtype=bool)
    bpt = np.asarray(cat["bptclass"])
    assert spread("lgm_tot_p50", "lgm_true", every) == pytest.approx(0.09, rel=0.1)
    assert spread("sfr_tot_p50", "sfr_true", bpt == 1) == pytest.approx(0.25, rel=0.1)
    assert spread("sfr_tot_p50", "sfr_true", np.isin(bpt, (-1, 4, 5))) == pytest.approx(
        0.75, rel=0.1
    )
    ok = col(cat, "oh_p50") != SENTINEL
    assert spread("oh_p50", "oh_true", ok) == pytest.approx(0.04, rel=0.1)
    half = 0.5 * (col(cat, "sfr_tot_p84") - col(cat, "sfr_tot_p16"))
    np.testing.assert_allclose(half[bpt == 1], 0.25)
    assert np.all(col(cat, "oh_p16")[~ok] == SENTINEL)


def test_many_lines_undetected_but_fluxes_kept(cat):
    """As in galSpecLine: many lines have S/N < 3, and their noisy fluxes are kept."""
    for line, (lo, hi) in {
        "h_alpha": (0.15, 0.45),
        "h_beta": (0.3, 0.6),
        "nii_6584": (0.15, 0.45),
        "oiii_5007": (0.3, 0.6),
    }.items():
        flux = col(cat, f"{line}_flux")
        undetected = flux / col(cat, f"{line}_flux_err") < 3
        assert lo < np.mean(undetected) < hi, line
        assert np.all(np.isfinite(flux)) and np.mean(flux[undetected] < 0) > 0.1, line


def test_magnitudes_are_galactic_extinction_free(cat):
    for band in "ugriz":
        assert np.all(col(cat, f"extinction_{band}") == 0.0)
    assert col(cat, "modelMag_r").max() < 17.77


def test_quenched_galaxies_are_redder_at_fixed_redshift(cat):
    z = col(cat, "z")
    gr = col(cat, "modelMag_g") - col(cat, "modelMag_r")
    q = np.asarray(cat["quenched"])
    for lo, hi in ((0.04, 0.07), (0.07, 0.1), (0.1, 0.14)):
        sel = (z >= lo) & (z < hi)
        assert np.median(gr[sel & q]) - np.median(gr[sel & ~q]) > 0.15
    # Colours redden with redshift (k-correction) for the red sequence.
    assert np.median(gr[q & (z > 0.12)]) > np.median(gr[q & (z < 0.05)]) + 0.15


def test_balmer_decrement_follows_dust(cat):
    ha, hb = col(cat, "h_alpha_flux"), col(cat, "h_beta_flux")
    sn = np.minimum(ha / col(cat, "h_alpha_flux_err"), hb / col(cat, "h_beta_flux_err"))
    good = sn > 10
    assert good.sum() > 500
    ratio = ha[good] / hb[good]
    assert np.median(ratio) >= 2.86 and np.mean(ratio) >= 2.86
    # For pure star-forming galaxies the decrement is case B times the Calzetti
    # reddening of the mock's own A_V.
    pure = good & ~np.asarray(cat["quenched"]) & ~np.asarray(cat["agn"])
    ebv = col(cat, "av_gas")[pure] / 4.05
    expected = 2.86 * 10 ** (0.4 * ebv * (calzetti_k(0.48627) - calzetti_k(0.65646)))
    assert np.median(ha[pure] / hb[pure] / expected) == pytest.approx(1.0, abs=0.03)


def test_agn_lie_above_kewley_and_bpt_classes(cat):
    f = {line: col(cat, f"{line}_flux") for line in LINES}
    sn = np.min([f[line] / col(cat, f"{line}_flux_err") for line in LINES], axis=0)
    good = sn > 5
    with np.errstate(divide="ignore", invalid="ignore"):
        n2 = np.log10(f["nii_6584"] / f["h_alpha"])
        o3 = np.log10(f["oiii_5007"] / f["h_beta"])
    above = (n2 >= 0.47) | (o3 > kewley01(np.minimum(n2, 0.469)))
    agn = np.asarray(cat["agn"])
    sf = ~agn & ~np.asarray(cat["quenched"])
    assert (good & agn).sum() > 50
    assert np.mean(above[good & agn]) > 0.8
    assert np.mean(above[good & sf]) < 0.02
    # AGN are massive; the classification reproduces the diagram's boundaries.
    assert np.median(col(cat, "lgm_tot_p50")[agn]) > 10.3
    bpt = np.asarray(cat["bptclass"])
    assert set(np.unique(bpt)) <= {-1, 1, 2, 3, 4, 5}
    assert {1, 3, 4}.issubset(set(np.unique(bpt)))
    one, four = bpt == 1, bpt == 4
    assert np.all(o3[one] < kauffmann03(n2[one])) and np.all(n2[one] < 0.05)
    assert np.all(above[four])


def test_weak_lines_can_be_negative(cat):
    for line in ("h_beta", "oiii_5007"):
        flux = col(cat, f"{line}_flux")
        assert 0.005 < np.mean(flux < 0) < 0.3
    # Quiescent galaxies have weak lines.
    q = np.asarray(cat["quenched"]) & ~np.asarray(cat["agn"])
    sf = ~np.asarray(cat["quenched"]) & ~np.asarray(cat["agn"])
    ha = col(cat, "h_alpha_flux")
    assert np.median(ha[q]) < 0.1 * np.median(ha[sf])


def test_morphology_columns(cat):
    bt = col(cat, "bulge_frac")
    assert np.all((bt >= 0) & (bt <= 1))
    q = np.asarray(cat["quenched"])
    assert bt[q].mean() > bt[~q].mean() + 0.2
    for name in ("r_half_disc", "r_half_bulge"):
        assert np.all(col(cat, name) > 0)
    assert 1.0 < np.median(col(cat, "r_half_disc")) < 4.0
    assert np.all(col(cat, "sersic_n_bulge") == 4)
    ar = col(cat, "axis_ratio")
    assert np.all((ar > 0.1) & (ar <= 1))
    pa = col(cat, "position_angle")
    assert np.all((pa >= 0) & (pa < 180))


def test_photometry_uses_kcorrect_projections():
    """Dust-free template maggies agree with kcorrect's own reconstruct()."""
    kcorrect_kc = pytest.importorskip("kcorrect.kcorrect")
    from astro_galpost.datasets import mock_photometry

    model = mock_photometry.photometry_model()
    kc = kcorrect_kc.Kcorrect(
        responses=[f"sdss_{b}0" for b in "ugriz"], redshift_range=[0.0, 0.5], nredshift=26
    )
    for iz in (2, 5, 10):  # z = 0.04, 0.1, 0.2: grid nodes, so no interpolation enters
        z = mock_photometry.Z_NODES[iz]
        for ours, theirs in ((0, mock_photometry._OLD_TEMPLATE), (1, mock_photometry._YOUNG_TEMPLATE)):
            coeffs = np.zeros(kc.templates.nsed, dtype=np.float32)
            coeffs[theirs] = 1.0
            expected = kc.reconstruct(redshift=z, coeffs=coeffs)
            got = np.exp(model.log_maggies[iz, :, ours, 0])
            np.testing.assert_allclose(got, expected, rtol=2e-3)


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"n": 10, "z_range": (0.01, 0.8)}, {"n": 10, "logm_range": (11.0, 10.0)}],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        make_mock_catalog(**kwargs)
