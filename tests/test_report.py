"""Evaluation reports: per-target metrics, the paper's Tables 1 and 2, Markdown/ECSV writers."""

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.table import QTable, Table

from astro_galpost import GalaxyPosterior
from astro_galpost.evaluation import (
    SEED_PAPER_TABLE1,
    evaluate_model,
    evaluate_samples,
    joint_calibration,
    model_space_samples,
    model_space_truth,
    table1,
    table2,
    to_markdown,
    write_report,
)
from astro_galpost.model.targets import TARGETS


def _gaussian_posteriors(n=3000, s=200, seed=0):
    """Calibrated Gaussian posteriors of stellar mass, redshift and Hα (in log10)."""
    rng = np.random.default_rng(seed)
    widths = {"log_mstar": 0.2, "redshift": 0.02, "halpha": 0.3}
    centres = {"log_mstar": rng.normal(10.5, 0.5, n), "redshift": rng.uniform(0.05, 0.25, n),
               "halpha": rng.normal(2.0, 0.5, n)}
    samples, truth = {}, {}
    for name, w in widths.items():
        true = centres[name] + rng.normal(0, w, n)
        draws = centres[name][:, None] + rng.normal(0, w, (n, s))
        if name == "halpha":
            true, draws = 10**true, 10**draws
        samples[name] = TARGETS[name].distribution(draws)
        truth[name] = true
    return samples, truth


def test_model_space_conversions():
    # lines: log10, softened below 2e-17 erg/s/cm2
    dist = TARGETS["halpha"].distribution(np.array([[10.0, 1000.0]]))
    np.testing.assert_allclose(model_space_samples(dist, "halpha"), [[1.0, 3.0]], atol=0.02)
    np.testing.assert_allclose(model_space_samples(dist, "halpha"), TARGETS["halpha"].to_model([[10.0, 1000.0]]))
    # a Quantity in another flux unit is converted to 1e-17 erg/s/cm2 first
    q = np.array([[1e-16, 1e-15]]) * u.erg / u.s / u.cm**2
    np.testing.assert_allclose(model_space_samples(q, "halpha"), TARGETS["halpha"].to_model([[10.0, 100.0]]))
    dex = TARGETS["log_mstar"].distribution(np.array([[10.0, 11.0]]))
    np.testing.assert_allclose(model_space_samples(dex, "log_mstar"), [[10.0, 11.0]])
    table = Table({"h_alpha_flux": [100.0, -9999.0, -3.0, 0.0]})  # a negative flux is a measurement
    np.testing.assert_allclose(model_space_truth(table, "halpha"),
                               [TARGETS["halpha"].to_model(100.0), np.nan, TARGETS["halpha"].to_model(-3.0), np.nan])
    np.testing.assert_allclose(model_space_truth({"redshift": [0.1]}, "redshift"), [0.1])


@pytest.mark.parametrize("unit", [u.dex, u.dex(u.one)])
def test_model_space_samples_refuse_dex_metallicity_like_labels(unit):
    """12 + log(O/H) samples in dex are refused as the labels are, not turned into 10**8.9."""
    samples = u.Dex(np.array([[8.9, 9.0]]), unit) if unit != u.dex else np.array([[8.9, 9.0]]) * unit
    with pytest.raises(u.UnitConversionError, match="target 'metallicity': .* has unit dex.*drop the unit"):
        model_space_samples(samples, "metallicity")
    np.testing.assert_allclose(model_space_samples(np.array([[1e10, 1e11]]) * u.Msun, "log_mstar"), [[10.0, 11.0]])


def test_table1_known_answers():
    rng = np.random.default_rng(1)
    z = rng.uniform(0.02, 0.3, 200)
    logm = rng.normal(10.5, 0.5, 200)
    log_ha = rng.normal(2.0, 0.4, 200)
    truth = Table({"zs": z, "lgm_tot_p50": logm, "h_alpha_flux": 10**log_ha})
    perfect = {"redshift": z[:, None] + np.zeros((200, 5)), "log_mstar": logm[:, None] + np.zeros((200, 5))}
    mean_only = {"redshift": np.full((200, 5), z.mean()), "halpha": np.full((200, 5), 10 ** log_ha.mean())}
    off = log_ha + rng.normal(0, 0.2, 200)  # R² judged in log10 flux
    noisy = {"halpha": TARGETS["halpha"].distribution(10 ** off[:, None] + np.zeros((200, 3)))}
    t = table1({"Photometry + NF (ours)": (perfect, truth, {"redshift": "zs"}),
                "mean": (mean_only, truth, {"redshift": "zs"}),
                "noisy": (noisy, truth)})
    assert t.colnames == ["method", "redshift", "log_mstar", "halpha"]  # the paper's order
    assert list(t["method"]) == ["Photometry + NF (ours)", "mean", "noisy"]
    assert t["redshift"][0] == pytest.approx(1.0) and t["log_mstar"][0] == pytest.approx(1.0)
    assert t["redshift"][1] == pytest.approx(0.0, abs=1e-12)
    model = TARGETS["halpha"].to_model  # R² judged in (softened) log10 flux
    truth_m, off_m = model(10**log_ha), model(10**off)
    assert t["halpha"][1] == pytest.approx(
        1 - np.sum((model(10 ** log_ha.mean()) - truth_m) ** 2) / np.sum((truth_m - truth_m.mean()) ** 2), rel=1e-9)
    expected = 1 - np.sum((off_m - truth_m) ** 2) / np.sum((truth_m - truth_m.mean()) ** 2)
    assert t["halpha"][2] == pytest.approx(expected, rel=1e-9)
    assert np.isnan(t["halpha"][0]) and np.isnan(t["log_mstar"][1])  # N/A where not inferred
    with_paper = table1({"ours": (perfect, truth, {"redshift": "zs"})}, include_paper=True)
    assert len(with_paper) == 1 + len(SEED_PAPER_TABLE1)
    assert with_paper["log_mstar"][-1] == pytest.approx(0.80)  # Photometry + NF (paper)
    rmse = table1({"ours": (perfect, truth, {"redshift": "zs"})}, metric="rmse")
    assert rmse["redshift"][0] == 0.0
    with pytest.raises(ValueError, match="R²"):
        table1({"ours": (perfect, truth)}, metric="rmse", include_paper=True)


def test_table2_layout_and_units():
    dec = QTable()
    dec["quantity"] = ["sigma_ale", "sigma_epi", "sigma_tot"]
    dec["redshift"] = [0.02, 0.001, np.hypot(0.02, 0.001)]
    dec["log_mstar"] = [0.2, 0.01, np.hypot(0.2, 0.01)] * u.dex
    dec["halpha"] = [0.3, 0.02, np.hypot(0.3, 0.02)] * u.dex
    dec.meta["average"] = "rms"
    t = table2(dec)
    assert t.colnames == ["quantity", "log_mstar", "redshift", "halpha"]  # paper's order
    assert list(t["quantity"]) == ["sigma_ale", "sigma_epi"]
    assert t["log_mstar"].unit == u.dex and t["log_mstar"][0] == pytest.approx(0.2)
    assert t.meta["average"] == "rms"
    full = table2(dec, include_total=True, include_paper=True)
    assert list(full["quantity"]) == ["sigma_ale", "sigma_epi", "sigma_tot", "paper sigma_ale", "paper sigma_epi"]
    assert full["redshift"][3] == pytest.approx(0.018) and full["halpha"][4] == pytest.approx(0.027)
    with pytest.raises(ValueError, match="uncertainty_decomposition"):
        table2(Table({"x": [1.0]}))


def test_evaluate_samples_calibrated_gaussians():
    samples, truth = _gaussian_posteriors()
    res = evaluate_samples(samples, truth, rng=1)
    assert list(res["target"]) == ["log_mstar", "redshift", "halpha"]
    assert list(res["space"]) == ["linear", "linear", "asinh"]
    assert np.all(res["n"] == 3000)
    assert np.all(res["pit_ks"] < 0.04)
    np.testing.assert_allclose(res["coverage_68"], 0.68, atol=0.03)
    np.testing.assert_allclose(res["coverage_95"], 0.95, atol=0.015)
    assert np.all(res["sbc_pvalue"] > 1e-4)
    # Hα is judged in log10: its RMSE is the 0.3 dex scatter of truth about the median
    assert res["rmse"][2] == pytest.approx(0.3, rel=0.05)
    joint = res.meta["joint"]
    assert set(joint) == {"core"}  # one line only: no lines group
    assert joint["core"]["targets"] == "log_mstar,redshift" and joint["core"]["n"] == 3000
    assert abs(joint["core"]["tarp_atc"]) < 0.02 and joint["core"]["hpd_68"] == pytest.approx(0.68, abs=0.03)


def test_evaluate_samples_redshift_residuals_are_normalised():
    z = np.linspace(0.05, 0.3, 100)
    pred = z + 0.01 * (1 + z)
    res = evaluate_samples({"redshift": pred[:, None] + np.zeros((100, 4))}, {"redshift": z},
                           sbc=False, joint=False)
    assert res["bias"][0] == pytest.approx(0.01) and res["outlier_fraction"][0] == 0.0
    assert "sbc_pvalue" not in res.colnames and "joint" not in res.meta


def test_joint_calibration_detects_overconfidence():
    rng = np.random.default_rng(4)
    n, s = 1500, 200
    mu = rng.normal(2.0, 0.4, (n, 4))
    truth_log = mu + rng.normal(0, 0.2, (n, 4))
    lines = ["halpha", "hbeta", "nii_6584", "oiii_5007"]
    good = {name: 10 ** (mu[:, i, None] + rng.normal(0, 0.2, (n, s))) for i, name in enumerate(lines)}
    narrow = {name: 10 ** (mu[:, i, None] + rng.normal(0, 0.08, (n, s))) for i, name in enumerate(lines)}
    truth = {name: 10 ** truth_log[:, i] for i, name in enumerate(lines)}
    ok = joint_calibration(good, truth, rng=0)
    bad = joint_calibration(narrow, truth, rng=0)
    assert list(ok["group"]) == ["lines"] and ok["dims"][0] == 4
    assert ok["tarp_ks_pvalue"][0] > 1e-3 and ok["hpd_95"][0] == pytest.approx(0.95, abs=0.02)
    assert bad["hpd_68"][0] < 0.3 and bad["tarp_ks_pvalue"][0] < 1e-6


def test_to_markdown_and_writers(tmp_path):
    t = Table({"method": ["ours", "a|b"], "z": [0.81234, np.nan], "n": [3, 4]})
    md = to_markdown(t, title="Table 1")
    assert md.splitlines() == ["### Table 1", "", "| method | z | n |", "| --- | --- | --- |",
                               "| ours | 0.8123 | 3 |", "| a\\|b | N/A | 4 |"]
    q = QTable({"quantity": ["sigma_ale"], "log_mstar": [0.2] * u.dex})
    q.meta["space"] = {"log_mstar": "as catalog"}
    q.meta["n"] = np.int64(3)
    files = write_report({"table1": t, "table 2": q}, tmp_path / "rep")
    assert [f.name for f in files] == ["report.md", "table1.ecsv", "table_2.ecsv"]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "### table1" in text and "| quantity | log_mstar [dex] |" in text
    back = QTable.read(tmp_path / "rep" / "table_2.ecsv")
    assert back["log_mstar"].unit == u.dex and back["log_mstar"][0].value == pytest.approx(0.2)
    assert back.meta["n"] == 3
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["report.md", "table1.ecsv", "table_2.ecsv"]
    with pytest.raises(FileExistsError):
        write_report({"table1": t}, tmp_path / "rep")
    write_report({"table1": t}, tmp_path / "rep", overwrite=True)
    (md_file,) = write_report({"t": t}, tmp_path / "only.md")
    assert md_file.read_text().startswith("# astro_galpost evaluation report")
    (one,) = write_report({"t": t}, tmp_path / "one.ecsv")
    assert len(Table.read(one)) == 2
    with pytest.raises(ValueError, match="one table"):
        write_report({"a": t, "b": t}, tmp_path / "two.ecsv")
    with pytest.raises(ValueError, match="no tables"):
        write_report({}, tmp_path / "none")


def test_markdown_keeps_small_values_and_honours_column_formats(tmp_path):
    t = QTable({"target": ["redshift"], "bias": [6.4e-06], "r2": [0.987654], "rmse": [0.0123456],
                "crps": [1234.5678], "n": [300]})
    t["r2"].info.format = ".2f"
    t["rmse"].info.format = "{:.1e}"
    t["crps"].info.format = "%.1f"
    row = "| redshift | 6.4e-06 | 0.99 | 1.2e-02 | 1234.6 | 300 |"  # bias: not 0.000
    assert to_markdown(t).splitlines()[-1] == row
    assert to_markdown(t, floatfmt=".2e").splitlines()[-1] == "| redshift | 6.40e-06 | 0.99 | 1.2e-02 | 1234.6 | 300 |"
    (md,) = write_report({"metrics": t}, tmp_path / "r.md")
    assert row in md.read_text().splitlines()
    write_report({"metrics": t}, tmp_path / "folder")
    assert row in (tmp_path / "folder" / "report.md").read_text().splitlines()


def test_write_report_to_a_folder_is_all_or_nothing(tmp_path):
    t = Table({"x": [1.0]})
    folder = tmp_path / "rep"
    write_report({"metrics": t, "table2": t}, folder)
    (folder / "report.md").unlink()
    with pytest.raises(FileExistsError, match="metrics.ecsv"):
        write_report({"metrics": t, "table2": t}, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.ecsv", "table2.ecsv"]  # no report.md written


def test_write_report_refuses_titles_that_give_one_file_name(tmp_path):
    t = Table({"x": [1.0]})
    with pytest.raises(ValueError, match="tables 'a b' and 'a_b' would both be written to a_b.ecsv"):
        write_report({"a b": t, "a_b": t}, tmp_path / "clash", overwrite=True)
    with pytest.raises(ValueError, match="'Metrics' and 'metrics'"):
        write_report({"Metrics": t, "metrics": t}, tmp_path / "clash")
    assert not (tmp_path / "clash").exists()


@pytest.fixture(scope="module")
def ensemble(mock_table, tiny):
    torch.set_num_threads(1)
    return GalaxyPosterior(n_ensemble=2, random_state=5, **tiny()).fit(mock_table[:450])


def test_evaluate_model_on_mock(mock_table, ensemble):
    test = mock_table[600:]
    res = evaluate_model(ensemble, test, n_samples=60)
    assert list(res["target"]) == list(ensemble.targets_)
    for name, n in zip(res["target"], res["n"]):
        _, valid = TARGETS[name].read(test, ensemble.targets_[name])
        assert n == valid.sum()
    for col in ("r2", "rmse", "sigma_nmad", "pit_ks", "pit_cvm", "coverage_68", "coverage_95", "crps", "sbc_pvalue"):
        assert np.all(np.isfinite(res[col])), col
    assert np.all((res["coverage_68"] <= res["coverage_95"]) & (res["coverage_95"] <= 1))
    assert set(res.meta["joint"]) == {"core", "lines"}
    assert res.meta["joint"]["lines"]["dims"] == 4 and res.meta["n_samples"] == 60


def test_evaluate_model_without_a_target_column(mock_table, ensemble):
    test = Table(mock_table[600:700], copy=True)
    test.remove_column(ensemble.targets_["halpha"])
    res = evaluate_model(ensemble, test, n_samples=20, sbc=False, joint=False)
    assert list(res["target"]) == list(ensemble.targets_)
    halpha = list(res["target"]).index("halpha")
    assert res["n"][halpha] == 0 and np.isnan(res["r2"][halpha]) and np.isnan(res["crps"][halpha])
    assert res["unit"][halpha] == "log10(1e-17 erg / (s cm2))" and res["space"][halpha] == "asinh"
    assert (np.delete(np.asarray(res["n"]), halpha) > 0).all()
    assert res.meta["n_rows"] == 100 and res.meta["n_samples"] == 20
    with pytest.raises(KeyError, match="none of the target columns"):  # checked before sampling
        evaluate_model(ensemble, Table({"ra": np.zeros(3)}), n_samples=5)


def test_evaluate_model_refuses_unusable_labels_and_warns_of_few(mock_table, tiny):
    model = GalaxyPosterior(random_state=5, **tiny(["redshift"])).fit(mock_table[:300])
    test = Table(mock_table[600:700], copy=True)
    test["z"] = -1.0  # outside the valid range: no usable label
    with pytest.raises(ValueError, match=r"no usable label .*'z' \(redshift: all missing or outside"):
        evaluate_model(model, test, n_samples=5)
    test["z"][2:] = np.nan
    test["z"][:2] = 0.1
    with pytest.warns(UserWarning, match="only 2 of 100 rows have a usable redshift label"):
        res = evaluate_model(model, test, n_samples=5, sbc=False, joint=False)
    assert res["n"][0] == 2


def test_evaluate_samples_complete_groups():
    rng = np.random.default_rng(6)
    n = 400
    log_ha = rng.normal(2.0, 0.3, n)
    samples = {"halpha": 10 ** (log_ha[:, None] + rng.normal(0, 0.1, (n, 50))),
               "oiii_5007": 10 ** (log_ha[:, None] - 0.5 + rng.normal(0, 0.1, (n, 50)))}
    oiii = np.where(np.arange(n) < 100, -9999.0, 10 ** (log_ha - 0.5))  # a quarter without [O III]
    truth = Table({"h_alpha_flux": 10**log_ha, "oiii_5007_flux": oiii})
    every = evaluate_samples(samples, truth, sbc=False, joint=False)
    complete = evaluate_samples(samples, truth, sbc=False, joint=False, complete_groups=True)
    assert list(every["n"]) == [400, 300] and list(complete["n"]) == [300, 300]
    assert "every target of the group" in complete.meta["rows"]
    only_ha = evaluate_samples(samples, truth, targets=["halpha"], sbc=False, joint=False, complete_groups=True)
    assert list(only_ha["n"]) == [300]
