"""``python -m astro_galpost.cli``: the ``galpost`` command."""

import sys

from .main import main

sys.exit(main())
