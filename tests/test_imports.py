"""Light imports: the physics and metric helpers do not load torch; the package's names load on first use."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["astro_galpost", "astro_galpost.physics", "astro_galpost.evaluation.metrics"])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names_resolve_and_unknown_names_raise():
    import astro_galpost

    for name in astro_galpost.__all__:
        assert getattr(astro_galpost, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        astro_galpost.not_a_name  # noqa: B018
