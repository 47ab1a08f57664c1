"""Sphinx configuration for astro_galpost (sphinx-astropy theme)."""

import datetime
from importlib.metadata import version as _version

from sphinx_astropy.conf.v2 import *  # noqa: F401,F403 - the astropy-affiliated defaults

project = "astro_galpost"
author = "astro_galpost developers"
copyright = f"{datetime.date.today().year}, {author}"
release = _version("astro_galpost")
version = ".".join(release.split(".")[:2])

extensions += ["sphinx_automodapi.smart_resolver"]  # noqa: F405
exclude_patterns += ["_build", "**.ipynb_checkpoints"]  # noqa: F405
intersphinx_mapping.update({  # noqa: F405
    "torch": ("https://pytorch.org/docs/stable/", None),
    "zuko": ("https://zuko.readthedocs.io/stable/", None),
})
intersphinx_timeout = 5


def _online(host: str = "docs.python.org") -> bool:
    import socket

    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


# offline builds (such as CI here) would fail with -W on unreachable inventories
if not _online():
    intersphinx_mapping.clear()  # noqa: F405
nitpicky = False
automodapi_toctreedirnm = "api"
numpydoc_show_class_members = False

html_theme_options.update({  # noqa: F405
    "github_url": None,
    "use_edit_page_button": False,
})
html_title = f"{project} v{release}"
suppress_warnings = ["intersphinx.external"]
