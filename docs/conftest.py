"""pytest configuration for the documentation folder.

``pytest`` collects the doctests of the narrative ``.rst`` pages here (see
``--doctest-rst`` in ``pyproject.toml``); the Sphinx configuration, the build
output and the pages Sphinx generates are not test files.
"""

import pytest

collect_ignore = ["conf.py", "gallery_hooks.py", "screenshots.py"]
collect_ignore_glob = ["_build/*", "api/*", "auto_examples/*", "generated/*", "sg_execution_times.rst"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The doctests of these pages train small models: one torch thread keeps them fast
    on busy machines (see ``gallery_hooks.py``); the previous setting is restored."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
