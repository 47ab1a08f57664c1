"""Sphinx configuration for astro_galpost (sphinx-astropy theme, automodapi, sphinx-gallery)."""

import datetime
import os
import sys
from importlib.metadata import version as _version

from sphinx_astropy.conf.v2 import *  # noqa: F401,F403 - the astropy-affiliated defaults

project = "astro_galpost"
author = "astro_galpost developers"
copyright = f"{datetime.date.today().year}, {author}"
release = _version("astro_galpost")
version = ".".join(release.split(".")[:2])

# sphinx_astropy.conf.v2 already enables numpydoc, automodapi (with its smart
# resolver), intersphinx, mathjax, viewcode, doctestplus and the plot directive.
extensions += ["sphinx_gallery.gen_gallery"]  # noqa: F405
exclude_patterns += [  # noqa: F405
    "_build",
    "**.ipynb_checkpoints",
    "sg_execution_times.rst",
]

intersphinx_mapping.update({  # noqa: F405
    "torch": ("https://pytorch.org/docs/stable/", None),
    "zuko": ("https://zuko.readthedocs.io/stable/", None),
})
intersphinx_timeout = 5


def _online(host: str = "docs.python.org") -> bool:
    import socket

    try:
        with socket.create_connection((host, 443), timeout=3):
            return True
    except OSError:
        return False


# Offline builds (such as CI here) would fail with -W on unreachable inventories.
if not _online():
    intersphinx_mapping.clear()  # noqa: F405

# Cross-references that cannot be resolved are not errors: many docstrings name
# types of other packages, which resolve only when intersphinx is online.
nitpicky = False

automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False

# -- command-line help -----------------------------------------------------------
# cli.rst includes the ``--help`` text of every ``galpost`` command, generated at
# build time so that it never drifts from the code.

_CLI_COMMANDS = ("", "demo", "fit", "predict", "evaluate", "fetch-sdss", "fetch-cutouts")


def _write_cli_help(folder: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated")) -> None:
    import contextlib
    import io

    from astro_galpost.cli import main

    os.makedirs(folder, exist_ok=True)
    old_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"
    try:
        for command in _CLI_COMMANDS:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
                main([command, "--help"] if command else ["--help"])
            name = f"galpost_{command or 'main'}.txt".replace("-", "_")
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(buffer.getvalue())
    finally:
        if old_columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old_columns


_write_cli_help()

# -- sphinx-gallery ----------------------------------------------------------

# the hook that resets torch between examples lives next to this file
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "within_subsection_order": "gallery_hooks.ExampleOrder",
    "matplotlib_animations": False,
    "abort_on_example_error": True,
    # a qualified name rather than a function, so that Sphinx can pickle its configuration
    "reset_modules": ("matplotlib", "gallery_hooks.reset_torch"),
    "download_all_examples": False,
    "remove_config_comments": True,
}

# -- HTML ------------------------------------------------------------------------

html_theme_options.update({  # noqa: F405
    "github_url": None,
    "use_edit_page_button": False,
})
html_title = f"{project} v{release}"
suppress_warnings = ["intersphinx.external"]
