"""Inference: the Predictor, per-class bandwidths and panoptic post-processing (pure functions).

Note: the function :func:`merge` shadows the submodule attribute ``panonet.inference.merge``;
import helpers from the module explicitly (``from panonet.inference.merge import ...``).
"""

from panonet.inference.bandwidth import bandwidth_table
from panonet.inference.bandwidth_search import BandwidthSearchResult, search_bandwidths
from panonet.inference.guided_upsample import GuidedUpsampling, guided_semantic
from panonet.inference.merge import (
    LABEL_DIVISOR,
    instances_from_embedding,
    merge,
    panoptic_from_semantic_instance,
    resize_labels,
    semantic_from_logits,
)
from panonet.inference.predictor import NetworkOutput, Predictor

__all__ = [
    "BandwidthSearchResult",
    "GuidedUpsampling",
    "LABEL_DIVISOR",
    "NetworkOutput",
    "Predictor",
    "bandwidth_table",
    "guided_semantic",
    "instances_from_embedding",
    "merge",
    "panoptic_from_semantic_instance",
    "resize_labels",
    "search_bandwidths",
    "semantic_from_logits",
]
