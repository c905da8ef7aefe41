"""Which semantic map instances are clustered on, for the functions that offer the choice
(evaluation, the twin tests, the bandwidth search)."""

from typing import Literal, get_args

__all__ = ["SemanticSource", "check_semantic_source"]

SemanticSource = Literal["pred", "gt"]
"""The network's semantic map ("pred") or the ground truth ("gt": the paper's AP_GT)."""


def check_semantic_source(value: object, fn: str) -> None:
    """Raises ValueError unless ``value`` is one of :data:`SemanticSource`."""
    if value not in get_args(SemanticSource):
        raise ValueError(f"{fn}: semantic_source must be 'pred' or 'gt', got {value!r}")
