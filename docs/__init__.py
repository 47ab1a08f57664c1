"""Makes docs/conftest.py importable as docs.conftest, distinct from tests/conftest.py."""
