"""panonet: real-time panoptic segmentation (PanoNet) for PyTorch.

The two hot operations of embedding-based panoptic segmentation, the discriminative loss and
bin-seeded mean-shift, are compiled C++/CUDA operators in :mod:`panonet.ops`.
"""

from panonet import ops

__version__ = "0.1.0"
__all__ = ["ops", "__version__"]
