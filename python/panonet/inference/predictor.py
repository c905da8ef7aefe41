"""End-to-end panoptic prediction: image(s) in, semantic / instance / panoptic maps out.

The predictor holds the state of inference (the model on its device, the per-class bandwidths);
every step after the network is :func:`panonet.inference.merge.merge`, the one post-processing
path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from panonet.data.labels import LABEL_DIVISOR
from panonet.inference.bandwidth import bandwidth_table
from panonet.inference.graphed import GraphedFrame
from panonet.inference.guided_upsample import GuidedUpsampling, check_guided_upsampling
from panonet.inference.merge import INSTANCE_REACH, merge
from panonet.inference.network_output import (
    MIN_IMAGE_SIZE,
    ImageInput,
    NetworkOutput,
    as_hwc_batch,
    check_network_output,
)
from panonet.inference.panoptic_ids import warn_instances_over_limit
from panonet.inference.validate import check_nonneg_int
from panonet.models.checkpoint import load_model
from panonet.models.fold import fold_batchnorm as fold_batchnorm_into_convs
from panonet.models.panonet import PanoNet, PanoNetOutput, preprocess

__all__ = ["MIN_IMAGE_SIZE", "NetworkOutput", "Predictor"]

# The network's precision -> its autocast dtype (None: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


class Predictor:
    """Panoptic segmentation of whole images with a PanoNet.

    Args:
        model_or_checkpoint: a :class:`~panonet.models.PanoNet`, or a checkpoint (path or loaded
            dict) for :func:`panonet.models.checkpoint.load_model`.
        device: where the network and the clustering run ("cpu", "cuda", "cuda:1", ...).
        bandwidths: per-class mean-shift bandwidths: a (num_classes,) tensor, a
            ``{trainId or class name: bandwidth}`` mapping, or the path of the JSON written by
            the bandwidth search; default: every thing class 2 * delta_v = 0.5
            (:func:`panonet.inference.bandwidth_table`).
        precision: the network's arithmetic: "float32" (default), "float16" autocast (CUDA
            only) or "bfloat16" autocast (CUDA, or a CPU with bfloat16 matrix units such as
            AMX; emulated, hence slow, on CPUs without them; timings and the effect on quality
            in ``docs/RESULTS.md``). Clustering and merging stay float32.
        half: shorthand for ``precision="float16"``.
        min_instance_size: instances with fewer pixels (at the output resolution) are dropped.
        instance_reach: how far (in 1/4-resolution pixels) a pixel whose class the instance
            map's nearest source pixel lacks looks for an instance of its class (thin parts of
            things; :data:`panonet.inference.merge.INSTANCE_REACH`); 0: it gets none.
        vote_groups: groups of thing classes clustered together, each instance taking its
            pixels' majority class (:func:`panonet.inference.merge.merge`'s ``vote_groups``,
            e.g. :data:`panonet.inference.merge.THING_VOTE_GROUPS`); None: class-wise.
        guided_upsampling: the semantic map at full resolution from the logits guided by the
            image (:class:`~panonet.inference.guided_upsample.GuidedUpsampling`; not in the
            paper: thin things keep their shape); None (the default): bilinear, the paper's.
        channels_last: NHWC memory format for the network (default on: cuDNN's fast kernels
            and oneDNN's want it; on the CPU it took the network from 2.24 s to 1.56 s per
            2048x1024 frame, measured).
        output_device: where the returned maps go ("cpu", the default); None keeps them on
            ``device`` (no download).
        stage_timings: time every stage, which waits for the device after each (5 waits per
            frame on a GPU); False: only ``total``, after one wait at the end.
        sync_free: post-process without reading any value back from the device until the end
            of the frame, where one read returns whether the embedding was finite (else
            ValueError) and the instance counts (a warning beyond 1000 of a class). Default: on
            CUDA (on the CPU reads cost nothing and the checks run as they go). With
            ``stage_timings=False`` and ``output_device=None`` a frame then waits for the GPU
            once; the image is uploaded from page-locked memory.
        cuda_graph: capture each frame size's device work (network, post-processing, the
            status) as a CUDA graph at its first frame and replay it for the next ones, each
            frame copied into the graph's input first: one launch instead of hundreds, for when
            the host's launch cost paces the GPU. Needs a CUDA device,
            ``sync_free`` and ``stage_timings=False``. Frames with ``semantic`` or
            ``return_logits`` run eagerly. The graph keeps the tensors it captured: after
            changing ``predictor.model``'s or ``predictor.bandwidth``'s in place nothing is
            needed, after replacing them call :meth:`reset_graphs`.
        fold_batchnorm: run a copy of the network with every BatchNorm folded into the
            convolution before it (:func:`panonet.models.fold.fold_batchnorm`): the same
            function up to float32 rounding, one pass over each feature map fewer (timings in
            ``docs/RESULTS.md``). ``model`` itself is then not touched; changes to it
            after construction do not reach the predictor (make a new one). False: the
            predictor runs ``model`` itself (moved to ``device``, put in eval mode).
        compile_network: run the network through ``torch.compile`` (inductor, with its
            weights frozen as constants: on the CPU oneDNN then holds them prepacked). Each
            frame size compiles at its first frame (tens of seconds on a CPU; needs the C++
            compiler inductor uses), later frames of that size are faster (timings in
            ``docs/RESULTS.md``). The frozen weights are those of the first frame: changes to
            ``predictor.model`` after it do not reach the compiled network (make a new
            predictor). Not with ``cuda_graph``.

    ``predict(image)`` (or calling the predictor) returns a dict:

    * ``semantic``: int64 (H, W) trainIds (255 never appears: every pixel gets a class);
    * ``instance``: int64 (H, W), 0 = no instance, 1..K unique within the image;
    * ``panoptic``: int64 (H, W), Cityscapes ids: labelId * 1000 + j for the j-th instance of a
      thing class, labelId for stuff, 0 for void (thing pixels left without an instance);
    * ``timings``: milliseconds per stage (preprocess, network, semantic, clustering, panoptic,
      total), measured with the device synchronised; only ``total`` with
      ``stage_timings=False``.

    For a batch the maps are (N, H, W). Maps are on ``output_device`` (the CPU by default).
    """

    def __init__(
        self,
        model_or_checkpoint: PanoNet | str | os.PathLike | Mapping[str, Any],
        *,
        device: str | torch.device = "cpu",
        bandwidths: torch.Tensor | Sequence[float] | Mapping | str | os.PathLike | None = None,
        precision: str = "float32",
        half: bool = False,
        min_instance_size: int = 0,
        instance_reach: int = INSTANCE_REACH,
        vote_groups: Sequence[Sequence[int]] | None = None,
        guided_upsampling: GuidedUpsampling | None = None,
        channels_last: bool | None = None,
        output_device: str | torch.device | None = "cpu",
        stage_timings: bool = True,
        sync_free: bool | None = None,
        cuda_graph: bool = False,
        fold_batchnorm: bool = True,
        compile_network: bool = False,
    ) -> None:
        self.device = torch.device(device)
        # None: the maps stay where they were computed (no download of three full-resolution
        # int64 maps, 50 MB at 2048x1024, for a consumer on the same GPU).
        self.output_device = None if output_device is None else torch.device(output_device)
        self.stage_timings = bool(stage_timings)
        self.sync_free = self.device.type == "cuda" if sync_free is None else bool(sync_free)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Predictor: device {device!r} requested but CUDA is not available")
        self.cuda_graph = bool(cuda_graph)
        if self.cuda_graph:
            if self.device.type != "cuda":
                raise ValueError(f"Predictor: cuda_graph=True needs a CUDA device, got {device!r}")
            if not self.sync_free or self.stage_timings:
                raise ValueError(
                    "Predictor: cuda_graph=True needs sync_free=True and stage_timings=False (a "
                    "graph cannot wait for the device between stages), got sync_free="
                    f"{self.sync_free}, stage_timings={self.stage_timings}"
                )
        self._graphs: dict[tuple[int, ...], GraphedFrame] = {}
        self.compile_network = bool(compile_network)
        if self.compile_network and self.cuda_graph:
            raise ValueError(
                "Predictor: compile_network=True and cuda_graph=True do not go together (the "
                "graph would capture the first frame's compilation), got both"
            )
        if half:
            if precision not in ("float32", "float16"):
                raise ValueError(
                    f"Predictor: half=True means precision='float16', got precision={precision!r}"
                )
            precision = "float16"
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(
                f"Predictor: expected precision in {sorted(AUTOCAST_DTYPES)}, got {precision!r}"
            )
        if precision == "float16" and self.device.type != "cuda":
            raise ValueError(
                "Predictor: precision='float16' (half=True) needs a CUDA device (float16 "
                f"convolutions; on a CPU use 'bfloat16'), got {device!r}"
            )
        self.precision = precision
        if isinstance(model_or_checkpoint, nn.Module):
            model = model_or_checkpoint
        elif isinstance(model_or_checkpoint, (str, os.PathLike, Mapping)):
            model = load_model(model_or_checkpoint)
        else:
            raise TypeError(
                "Predictor: expected a PanoNet, a checkpoint path or a loaded checkpoint dict, got "
                f"{type(model_or_checkpoint).__name__}"
            )
        if not isinstance(model, PanoNet):
            raise TypeError(f"Predictor: expected a PanoNet, got {type(model).__name__}")
        if channels_last is None:
            channels_last = True
        self.channels_last = channels_last
        self.fold_batchnorm = bool(fold_batchnorm)
        # The predictor runs its own copy, folded: ``model`` stays as it was (weights, device,
        # mode), and training it further does not reach this predictor.
        if self.fold_batchnorm:
            model = fold_batchnorm_into_convs(model)
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._compiled: tuple[nn.Module, Callable[[torch.Tensor], PanoNetOutput]] | None = None
        self.num_classes = model.num_classes
        self.bandwidth = bandwidth_table(bandwidths, num_classes=self.num_classes).to(self.device)
        if min_instance_size < 0:
            raise ValueError(f"Predictor: min_instance_size must be >= 0, got {min_instance_size}")
        self.min_instance_size = int(min_instance_size)
        self.instance_reach = check_nonneg_int(instance_reach, "Predictor", "instance_reach")
        self.vote_groups = (
            None if vote_groups is None else tuple(tuple(int(c) for c in g) for g in vote_groups)
        )
        self.guided_upsampling = check_guided_upsampling(guided_upsampling, "Predictor")

    def with_settings(self, **changes: Any) -> Predictor:
        """A predictor on this one's network with some settings changed, e.g. a real-time twin
        of a timed one (``with_settings(stage_timings=False, output_device=None)``).

        The network is shared, not copied, folded or moved again, and so is its compiled form
        (``compile_network``): a frame size one of them compiled is not compiled again by the
        other (unless their precisions differ: autocast is part of the program).

        Args:
            **changes: any of ``bandwidths``, ``precision``, ``min_instance_size``,
                ``instance_reach``, ``vote_groups``, ``guided_upsampling``, ``output_device``,
                ``stage_timings``,
                ``sync_free``, ``cuda_graph``, ``compile_network`` (as in the constructor); the
                others keep this predictor's values.

        Raises:
            TypeError: for a setting not in that list (``device``, ``channels_last`` and
                ``fold_batchnorm`` belong to the network: make a new predictor).
            ValueError: for settings the constructor refuses.
        """
        # The settings that do not touch the network, with this predictor's values.
        settings: dict[str, Any] = {
            "bandwidths": self.bandwidth,
            "precision": self.precision,
            "min_instance_size": self.min_instance_size,
            "instance_reach": self.instance_reach,
            "vote_groups": self.vote_groups,
            "guided_upsampling": self.guided_upsampling,
            "output_device": self.output_device,
            "stage_timings": self.stage_timings,
            "sync_free": self.sync_free,
            "cuda_graph": self.cuda_graph,
            "compile_network": self.compile_network,
        }
        unknown = sorted(set(changes) - set(settings))
        if unknown:
            raise TypeError(
                f"Predictor.with_settings: expected settings among {sorted(settings)}, "
                f"got {unknown}"
            )
        settings.update(changes)
        other = Predictor(
            self.model,
            device=self.device,
            channels_last=self.channels_last,
            fold_batchnorm=False,  # self.model is already this predictor's (folded) copy
            **settings,
        )
        if other.compile_network and self.compile_network:
            # torch.compile only wraps here; the shared wrapper holds the programs it compiles.
            self._network()
            other._compiled = self._compiled
        return other

    def reset_graphs(self) -> None:
        """Drops the captured CUDA graphs (``cuda_graph=True``): the next frame of each size is
        captured again, with the model's and the bandwidths' current tensors."""
        self._graphs.clear()

    def __call__(self, image: ImageInput, **kwargs: Any) -> dict[str, Any]:
        return self.predict(image, **kwargs)

    @torch.inference_mode()
    def run_network(self, image: ImageInput) -> NetworkOutput:
        """The network's part of :meth:`predict` alone: preprocessing and the network, with this
        predictor's precision (and compiled network, if any).

        Args:
            image: as for :meth:`predict`.

        Returns:
            :class:`NetworkOutput`, on this predictor's device; ``predict(output)`` then gives
            the maps ``predict(image)`` gives (the same arithmetic, run in two calls).
        """
        hwc, batched = as_hwc_batch(image)
        hwc = self._upload(hwc)
        logits, embedding = self._network_frame(hwc, lambda _: None)
        size = (int(hwc.shape[1]), int(hwc.shape[2]))
        return NetworkOutput(logits, embedding, size, batched, image=hwc)

    @torch.inference_mode()
    def predict(
        self,
        image: ImageInput | NetworkOutput,
        *,
        semantic: torch.Tensor | None = None,
        return_logits: bool = False,
    ) -> dict[str, Any]:
        """Panoptic maps of one image or a batch.

        Args:
            image: uint8 RGB: a NumPy array (H, W, 3) or (N, H, W, 3); a tensor (3, H, W) or
                (N, 3, H, W); or a list of same-sized images of either kind. Or the
                :class:`NetworkOutput` of :meth:`run_network` (of this predictor or of one
                sharing its network through :meth:`with_settings`): then only the
                post-processing runs, with this predictor's settings, and ``timings`` has no
                ``preprocess`` and ``network``.
            semantic: optional integer trainIds, (H, W) or (N, H, W) like the output (255 =
                ignore), used instead of the predicted semantic map for clustering and merging
                (e.g. ground truth: the paper's AP_GT).
            return_logits: also return ``logits``, the network's 1/4-resolution semantic logits
                ((C, h, w) or (N, C, h, w) float32, on ``output_device`` like the maps), e.g.
                for instance scores.

        Returns:
            dict with ``semantic``, ``instance``, ``panoptic`` ((H, W) or (N, H, W) int64 CPU
            tensors) and ``timings`` (ms per stage), see the class docstring.
        """
        network_output = image if isinstance(image, NetworkOutput) else None
        if network_output is not None:
            check_network_output(network_output, self.device, self.num_classes)
            batched, frames = network_output.batched, network_output.logits.shape[0]
        else:
            hwc, batched = as_hwc_batch(image)
            frames = hwc.shape[0]
        sync = _synchronizer(self.device)
        timings: dict[str, float] = {}
        start = tick = time.perf_counter()

        def lap(name: str) -> None:
            # Timing a stage waits for the device; without stage timings, nothing waits here.
            if not self.stage_timings:
                return
            nonlocal tick
            sync()
            now = time.perf_counter()
            timings[name] = (now - tick) * 1e3
            tick = now

        logits = None
        if semantic is not None:
            semantic = semantic if batched else semantic.unsqueeze(0)
        if network_output is not None:
            logits = network_output.logits
            maps, status = self._post_process(
                logits,
                network_output.embedding,
                network_output.size,
                semantic,
                lap,
                image=network_output.image,
            )
        elif self.cuda_graph and semantic is None and not return_logits:
            frame = self._graphs.get(tuple(hwc.shape))
            if frame is None:
                frame = GraphedFrame(self._graphed_device_frame, hwc, self.device)
                self._graphs[frame.shape] = frame
            maps, status = frame.run(hwc)
        else:
            maps, logits, status = self._device_frame(self._upload(hwc), semantic, lap)
        if status is not None:
            # The frame's one read: the embedding's finiteness and the instance counts.
            values = status.tolist()
            if not values[0]:
                raise ValueError(
                    "Predictor.predict: the network's embedding holds NaN or Inf values (a "
                    "diverged checkpoint, or float16 overflow: try precision='float32')"
                )
            if max(values[1:], default=0) > LABEL_DIVISOR:
                # The counts already read: no second wait.
                counts = np.reshape(values[1:], (frames, -1))
                warn_instances_over_limit(counts, LABEL_DIVISOR)
        else:
            sync()
        timings["total"] = (time.perf_counter() - start) * 1e3

        if return_logits:
            maps["logits"] = logits
        maps = {k: v if batched else v[0] for k, v in maps.items()}
        if self.output_device is not None:
            maps = {k: v.to(self.output_device) for k, v in maps.items()}
        return {**maps, "timings": timings}

    def _upload(self, hwc: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and hwc.device.type == "cpu":
            # From page-locked memory the upload does not wait for the GPU.
            return hwc.pin_memory().to(self.device, non_blocking=True)
        return hwc

    def _device_frame(
        self,
        hwc: torch.Tensor,
        semantic: torch.Tensor | None,
        lap: Callable[[str], None],
        *,
        graphed: bool = False,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """The frame's device work. ``hwc``: (N, H, W, 3) uint8 on the device; ``semantic``:
        optional (N, H, W) trainIds. Returns the maps (dict of (N, H, W) int64), the 1/4
        logits (N, C, h, w) float32, and with ``sync_free`` the status to read (int64: 1 if the
        embedding is finite, then the (N, C) instance counts, flattened), else None."""
        logits, embedding = self._network_frame(hwc, lap, graphed=graphed)
        size = (int(hwc.shape[1]), int(hwc.shape[2]))
        maps, status = self._post_process(logits, embedding, size, semantic, lap, image=hwc)
        return maps, logits, status

    def _network_frame(
        self, hwc: torch.Tensor, lap: Callable[[str], None], *, graphed: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessing and the network: (N, H, W, 3) uint8 on the device -> the 1/4 logits
        (N, C, h, w) and the embedding (N, D, h, w), float32, the embedding contiguous."""
        x = preprocess(hwc, device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lap("preprocess")
        # A graph replays the casts it captured: autocast's cache of cast weights (kept between
        # calls) must not be filled inside one.
        autocast_dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(
            self.device.type,
            dtype=autocast_dtype or torch.float32,
            enabled=autocast_dtype is not None,
            cache_enabled=not graphed,
        ):
            out = self._network()(x)
        logits = out.semantic[0].float()
        embedding = out.embedding[0].float().contiguous()
        lap("network")
        return logits, embedding

    def _post_process(
        self,
        logits: torch.Tensor,
        embedding: torch.Tensor,
        size: tuple[int, int],
        semantic: torch.Tensor | None,
        lap: Callable[[str], None],
        *,
        image: torch.Tensor | None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Everything after the network (:func:`~panonet.inference.merge.merge`): the maps
        (dict of (N, H, W) int64) and, with ``sync_free``, the status to read (see
        :meth:`_device_frame`), else None. ``image``: the (N, H, W, 3) uint8 frame on the
        device, for ``guided_upsampling``."""
        # sync_free: nothing in the post-processing reads values back (check_inputs=False); the
        # embedding's finiteness and the instance counts are read together at the end, the
        # frame's one wait for the device when stages are not timed.
        maps = merge(
            logits,
            embedding,
            self.bandwidth,
            size=size,
            semantic=semantic,
            min_instance_size=self.min_instance_size,
            instance_reach=self.instance_reach,
            vote_groups=self.vote_groups,
            stage=lap,
            check_inputs=not self.sync_free,
            guided_upsampling=self.guided_upsampling,
            image=image,
        )
        status = None
        if self.sync_free:
            counts = maps.pop("instances_per_class")
            finite = torch.isfinite(embedding).all().view(1).long()
            status = torch.cat([finite, counts.flatten()])
        return maps, status

    def _network(self) -> Callable[[torch.Tensor], PanoNetOutput]:
        """``self.model``, or with ``compile_network`` its compiled form (made again when
        ``self.model`` was replaced)."""
        if not self.compile_network:
            return self.model
        if self._compiled is None or self._compiled[0] is not self.model:
            # dynamic=False: one program specialised to each frame size (a video's frames share
            # one); freezing: the weights become constants that inductor may fold and prepack.
            compiled = torch.compile(self.model, dynamic=False, options={"freezing": True})
            self._compiled = (self.model, compiled)
        return self._compiled[1]

    def _graphed_device_frame(
        self, hwc: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """What a CUDA graph captures: the maps and the status of :meth:`_device_frame`."""
        maps, _, status = self._device_frame(hwc, None, lambda _: None, graphed=True)
        assert status is not None  # cuda_graph implies sync_free
        return maps, status


def _synchronizer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
