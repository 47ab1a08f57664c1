"""The README's analysis snippet runs as written (with a tiny network and few galaxies), so it cannot rot."""

import re
import shlex
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def test_readme_has_one_python_snippet():
    assert len(_python_snippets()) == 1


def test_readme_snippet_runs(tmp_path, monkeypatch, tiny_by_default):
    import astro_galpost.datasets

    load = astro_galpost.datasets.load_kcorrect_sample
    monkeypatch.setattr(astro_galpost.datasets, "load_kcorrect_sample", lambda *a, **k: load(*a, **k)[:500])
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_python_snippets()[0], str(README), "exec"), namespace)  # noqa: S102 - the README's own code

    test_table, out = namespace["test_table"], namespace["out"]
    assert 0 < len(test_table) < 500 and np.all(np.asarray(test_table["z"]) <= 0.3)
    assert namespace["post"]["redshift"].shape == (len(test_table),)
    assert namespace["post"]["redshift"].n_samples == 1000
    assert {"redshift_p16", "redshift_p50", "redshift_p84"} <= set(out.colnames)
    assert (tmp_path / "model_dir").is_dir()
    again = namespace["gp2"].predict(test_table)
    np.testing.assert_allclose(again["redshift_p50"].unmasked.value, out["redshift_p50"].unmasked.value, rtol=1e-5)


def _galpost_commands() -> list[list[str]]:
    """The README's command-line example after ``galpost demo --quick``, as argument lists."""
    block = re.search(r"^```bash\n(galpost demo --quick.*?)^```", README.read_text(encoding="utf-8"),
                      flags=re.MULTILINE | re.DOTALL).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("galpost ")]
    return [argv for argv in commands if argv[0] != "demo"]


def test_readme_command_line_example_runs(tmp_path, monkeypatch, tiny_by_default):
    from astro_galpost import GalaxyPosterior
    from astro_galpost.cli import main
    from astro_galpost.datasets import make_mock_catalog

    monkeypatch.chdir(tmp_path)
    (tmp_path / "galpost_demo").mkdir()
    # as the demo writes it: labelled mock galaxies with an earlier model's posterior columns
    table = make_mock_catalog(300, random_state=0)
    demo = GalaxyPosterior(targets=["log_mstar", "redshift"], random_state=0).fit(table)  # tiny_by_default
    demo.predict(table, n_samples=50).write(tmp_path / "galpost_demo" / "mock_posteriors.ecsv")
    commands = _galpost_commands()
    assert [c[0] for c in commands] == ["fit", "predict", "evaluate"]
    for argv in commands:
        argv = ["2" if previous == "--max-epochs" else a for previous, a in zip([None, *argv], argv)]
        assert main(argv) == 0, argv
    assert (tmp_path / "posteriors.parquet").is_file() and (tmp_path / "report.md").is_file()
