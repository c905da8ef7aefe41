"""CUDA graph capture as torch recommends it: warm-up calls on a side stream, then one capture.

Shared by the graphed inference frame (:mod:`panonet.inference.graphed`) and the graphed
training step (:mod:`panonet.train.graphed_step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["capture"]

T = TypeVar("T")


def capture(
    fn: Callable[[], T], device: torch.device, *, warmup: int = 2
) -> tuple[torch.cuda.CUDAGraph, T]:
    """``fn()`` captured as a CUDA graph on ``device``, after ``warmup`` (at least one) eager
    calls on a side stream, torch's recipe: cuDNN autotuning and anything ``fn`` caches on the
    device happen there, outside the graph. Returns the graph and the outputs of the captured
    call, which each ``graph.replay()`` rewrites from the same input tensors. ``fn`` must not
    synchronize with the host nor create tensors from host data after its first call."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(max(1, warmup)):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: other threads (a DataLoader's pin-memory thread allocating page-locked
    # memory) may go on using CUDA during the capture; this thread still may not.
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = fn()
    return graph, out
