"""Light imports: the physics and metric helpers do not load torch; the package's names load on first use."""

import subprocess
import sys

import pytest

# the command line too: `galpost --help` and `--version` need no torch
LIGHT_MODULES = ["astro_galpost", "astro_galpost.physics", "astro_galpost.evaluation.metrics", "astro_galpost.cli.main"]


def test_import_does_not_load_torch():
    """In a new process, torch is still not loaded after importing each module in turn (one process, not three)."""
    code = ("import importlib, sys\n"
            f"for name in {LIGHT_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "    print(name, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"{module} False" for module in LIGHT_MODULES]


def test_public_names_resolve_and_unknown_names_raise():
    import astro_galpost

    for name in astro_galpost.__all__:
        assert getattr(astro_galpost, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        astro_galpost.not_a_name  # noqa: B018
