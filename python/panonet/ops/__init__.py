"""panonet's operators: fused C++/CUDA kernels registered as ``torch.ops.panonet.*``.

Each op has a Python wrapper here (validation, documentation, autograd and fake-tensor
registration), so it works with autograd, ``torch.compile`` and ``torch.library.opcheck``.
"""

from panonet.ops._extension import built_with_cuda, cuda_arch_list
from panonet.ops.cluster_instances import cluster_instances
from panonet.ops.discriminative_loss import discriminative_loss
from panonet.ops.guided_upsample_argmax import guided_upsample_argmax
from panonet.ops.mean_shift import mean_shift
from panonet.ops.panoptic_ids import panoptic_ids
from panonet.ops.upsample_argmax import upsample_argmax
from panonet.ops.upsample_instances import upsample_instances

__all__ = [
    "built_with_cuda",
    "cluster_instances",
    "cuda_arch_list",
    "discriminative_loss",
    "guided_upsample_argmax",
    "mean_shift",
    "panoptic_ids",
    "upsample_argmax",
    "upsample_instances",
]
