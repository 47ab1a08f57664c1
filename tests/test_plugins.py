"""Third-party targets, encoders and flows registered through entry points."""

import sys
import textwrap

import numpy as np
import pytest

from astro_galpost import ENCODERS, FLOWS, TARGETS, GalaxyPosterior

PLUGIN = '''
import astropy.units as u
import numpy as np
from astro_galpost import Target, PhotometryEncoder
from astro_galpost.model.flows import realnvp

VELOCITY = Target("velocity_dispersion", u.km / u.s, "velDisp", "kinematics", space="log10",
                  missing=(0.0, -9999.0), description="stellar velocity dispersion")


class ColourEncoder(PhotometryEncoder):
    name = "colours_plugin"
    estimator_options = ()  # its own bands: not the estimator's photometry, which PhotometryEncoder takes

    def __init__(self, columns=("modelMag_g", "modelMag_r", "modelMag_i"), errors=None, min_bands=None):
        super().__init__(columns, errors, min_bands)


def small_realnvp(features, context, **options):
    return realnvp(features, context, transforms=2, hidden_features=(8,), **options)
'''

ENTRY_POINTS = '''
[astro_galpost.targets]
velocity_dispersion = galpost_test_plugin:VELOCITY

[astro_galpost.encoders]
colours_plugin = galpost_test_plugin:ColourEncoder

[astro_galpost.flows]
small_realnvp = galpost_test_plugin:small_realnvp
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "galpost_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "galpost_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: galpost-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (TARGETS, ENCODERS, FLOWS):
        registry.load_plugins(reload=True)
    yield
    for registry, name in ((TARGETS, "velocity_dispersion"), (ENCODERS, "colours_plugin"), (FLOWS, "small_realnvp")):
        registry.unregister(name)
    sys.modules.pop("galpost_test_plugin", None)


def test_entry_points_register(plugin):
    assert "velocity_dispersion" in TARGETS
    assert TARGETS["velocity_dispersion"].group == "kinematics"
    assert ENCODERS["colours_plugin"].name == "colours_plugin"
    assert "small_realnvp" in FLOWS


def test_plugins_work_in_the_estimator(plugin, mock_table, tiny, tmp_path):
    options = tiny(["log_mstar", "redshift", "velocity_dispersion"])
    options["flows"]["core"] = "small_realnvp"
    gp = GalaxyPosterior(encoder=["photometry", "colours_plugin"], random_state=0, **options)
    gp.fit(mock_table[:400])
    assert [g.name for g in gp.groups_] == ["core", "kinematics"]
    assert gp.flows_["core"] == "small_realnvp"
    assert list(gp.encoders_[1].columns) == ["modelMag_g", "modelMag_r", "modelMag_i"]
    post = gp.sample(mock_table[400:410], n_samples=10)
    assert post["velocity_dispersion"].unit == "km / s"
    gp.save(tmp_path / "m")
    again = GalaxyPosterior.load(tmp_path / "m")
    np.testing.assert_array_equal(
        again.sample(mock_table[400:410], n_samples=10, random_state=1)["redshift"].distribution,
        gp.sample(mock_table[400:410], n_samples=10, random_state=1)["redshift"].distribution,
    )


def test_a_model_needing_a_missing_plugin_names_it(plugin, mock_table, tiny, tmp_path):
    """Loading a model whose flow comes from a plugin not installed says so (it said the config had no entry)."""
    from astro_galpost import ModelFormatError

    options = tiny(["log_mstar", "redshift"])
    options["flows"]["core"] = "small_realnvp"
    GalaxyPosterior(random_state=0, **options).fit(mock_table[:300]).save(tmp_path / "m")
    FLOWS.unregister("small_realnvp")
    with pytest.raises(ModelFormatError, match="needs the flow 'small_realnvp'.*install the plugin"):
        GalaxyPosterior.load(tmp_path / "m")
    FLOWS.register("small_realnvp", sys.modules["galpost_test_plugin"].small_realnvp)
