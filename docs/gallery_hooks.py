"""Hooks of the Sphinx-Gallery build (see ``sphinx_gallery_conf`` in ``conf.py``)."""


def reset_torch(gallery_conf, fname, when=None):
    """Run before each example: torch computes on one thread.

    The examples run one after another inside the Sphinx process. On a shared or
    busy machine, torch's default of one thread per core makes its OpenMP
    workers wait on each other and slows training many times over; one thread
    keeps each example's run time predictable. It does not change any result
    shown, only how fast it is computed.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)


#: Order of the examples in the gallery: from a first posterior on real galaxies to
#: the specialised ones. Examples not listed follow, by file name.
EXAMPLE_ORDER = (
    "plot_photoz_sdss.py",
    "plot_mock_corner.py",
    "plot_predicted_vs_true.py",
    "plot_evaluation.py",
    "plot_bpt.py",
    "plot_images_vae.py",
    "plot_black_hole_mass.py",
)


class ExampleOrder:
    """Sphinx-Gallery ``within_subsection_order`` key following `EXAMPLE_ORDER`."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in EXAMPLE_ORDER:
            return (0, EXAMPLE_ORDER.index(filename), filename)
        return (1, 0, filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"
