"""Encoders turn catalog rows (and images) into the features the posterior network reads.

The registry :data:`ENCODERS` maps names to encoder classes; packages add their
own through the ``astro_galpost.encoders`` entry-point group.
"""

from ..utils.registry import Registry
from .base import Encoder
from .image_stats import ImageStatsEncoder
from .photometry import PhotometryEncoder
from .vae import VAEEncoder

__all__ = ["ENCODERS", "Encoder", "ImageStatsEncoder", "PhotometryEncoder", "VAEEncoder", "register_encoder"]

#: Registry of encoder classes: ``ENCODERS["photometry"]``.
ENCODERS: Registry[type[Encoder]] = Registry("encoder", "astro_galpost.encoders")


def register_encoder(cls: type[Encoder], *, overwrite: bool = False) -> type[Encoder]:
    """Register an `Encoder` subclass under its ``name``; usable as a class decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no 'name' to register under")
    return ENCODERS.register(cls.name, cls, overwrite=overwrite)


register_encoder(PhotometryEncoder)
register_encoder(VAEEncoder)
register_encoder(ImageStatsEncoder)
