"""A frame's device work captured once as a CUDA graph and replayed for every later frame.

On a fast GPU the sync-free pipeline is paced by the host: a 1024x2048 frame is several hundred
kernel launches (the network, then ~100 for the clustering alone), each costing the host a few
microseconds, so the GPU waits between them (on the H200: 21-25 ms per frame end to end against
15 ms of summed stages). A graph replays all of them with one launch. What is captured must not
wait for the host or read host memory it did not pin: the sync-free post-processing
(``check_inputs=False``) and the network qualify. The frame reaches the graph's input buffer
before each replay: from host memory through a page-locked buffer (an asynchronous upload), or
copied on the device when it is already there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from panonet.cuda_graph import capture

__all__ = ["GraphedFrame"]

FrameFn = Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], torch.Tensor]]


class GraphedFrame:
    """The device work of one frame size, captured as a CUDA graph.

    Args:
        fn: the work: ``fn(hwc)`` with ``hwc`` a (N, H, W, 3) uint8 tensor on ``device`` returns
            ``(maps, status)``, a dict of tensors and a tensor, all on ``device``. It must not
            synchronize with the host nor create tensors from host data after its first call.
        first: the first frame, a (N, H, W, 3) uint8 tensor (host or ``device``): its size is
            the graph's, and the warm-up runs on it.
        device: the CUDA device.
        warmup: eager calls of ``fn`` before the capture (see :func:`capture`).
    """

    def __init__(
        self, fn: FrameFn, first: torch.Tensor, device: torch.device, *, warmup: int = 2
    ) -> None:
        if device.type != "cuda":
            raise ValueError(f"GraphedFrame: expected a CUDA device, got {device}")
        self.shape = tuple(first.shape)
        self._pinned: torch.Tensor | None = None  # made at the first frame from host memory
        self._hwc = torch.empty(self.shape, dtype=torch.uint8, device=device)
        self._load(first)
        self._graph, (self._maps, self._status) = capture(
            lambda: fn(self._hwc), device, warmup=warmup
        )

    def _load(self, hwc: torch.Tensor) -> None:
        """The frame into the graph's input buffer, on the current stream (before the replay)."""
        if hwc.device.type == "cuda":
            self._hwc.copy_(hwc)
            return
        if self._pinned is None:
            self._pinned = torch.empty(self.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned.copy_(hwc)
        self._hwc.copy_(self._pinned, non_blocking=True)

    def run(self, hwc: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Replays the graph on ``hwc``, a (N, H, W, 3) uint8 tensor of the captured size, in
        host memory or on the graph's device.

        Returns the maps, copied (the graph's own buffers are rewritten by the next frame), and
        the status tensor itself, valid until the next call. The caller must wait for the
        device (read the status) before the next call: the page-locked staging buffer is
        refilled then.
        """
        if tuple(hwc.shape) != self.shape:
            raise ValueError(
                f"GraphedFrame.run: expected a frame of shape {self.shape}, got {tuple(hwc.shape)}"
            )
        self._load(hwc)
        self._graph.replay()
        return {k: v.clone() for k, v in self._maps.items()}, self._status
