"""Helpers every part of the package uses: atomic writes, registries, parameters, threads, columns.

Import from the modules: ``astro_galpost.utils.atomic``, ``.registry``, ``.params``, ``.threads``,
``.columns``, ``.lazy``. This package imports none of them, so that using one loads nothing else.
"""

__all__: list[str] = []
