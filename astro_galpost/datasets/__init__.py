"""Catalogs for training and testing: a physically motivated mock (with images), the kcorrect SDSS sample, the demo.

SDSS fetching lives in `astro_galpost.sdss`.
"""

from ._paths import shared_data_dir
from .kcorrect_sample import kcorrect_sample_path, load_kcorrect_sample
from .mock import make_mock_catalog
from .mock_images import make_mock_images, mock_catalog_with_images

__all__ = [
    "make_mock_catalog",
    "make_mock_images",
    "mock_catalog_with_images",
    "load_kcorrect_sample",
    "kcorrect_sample_path",
    "shared_data_dir",
]
