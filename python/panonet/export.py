"""Export PanoNet for deployment: TorchScript (``torch.jit.trace``) and ONNX.

Both exports wrap the model in :class:`InferenceWrapper`: input (B, 3, H, W) float32 images,
already normalised (:func:`panonet.models.preprocess`); outputs the semantic logits
(B, num_classes, ceil(H/4), ceil(W/4)) and the embedding (B, D, ceil(H/4), ceil(W/4)). The
coordinate maps are generated inside the graph. The graphs are specialised to the H x W given
at export (resampling sizes and pyramid-pooling windows are computed from it); the batch size is
free in both.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from panonet.models.panonet import PanoNet

__all__ = ["InferenceWrapper", "export_onnx", "export_torchscript"]

DEFAULT_OPSET = 18


class InferenceWrapper(nn.Module):
    """images (B, 3, H, W) float -> (semantic logits at 1/4, embedding at 1/4)."""

    def __init__(self, model: PanoNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out.semantic[0], out.embedding[0]


def _example(model: nn.Module, height: int, width: int, batch: int) -> torch.Tensor:
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, height, width, generator=generator).to(device)


class _EvalMode:
    """Put a model in eval mode for the export, restoring its previous mode afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def export_torchscript(
    model: PanoNet, path: str | os.PathLike, height: int, width: int, *, batch: int = 1
) -> Path:
    """Trace ``InferenceWrapper(model)`` in eval mode on a (batch, 3, H, W) input and save it.

    Load with ``torch.jit.load(path)``; call with (B, 3, H, W) float32 normalised images. Any
    batch size works; H and W must be the exported ones. TorchScript is deprecated in recent
    PyTorch (``torch.jit.trace``/``load`` warn); ONNX (:func:`export_onnx`) is the durable format.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    wrapper = InferenceWrapper(model)
    with _EvalMode(model), torch.no_grad(), warnings.catch_warnings():
        wrapper.eval()
        # The tracer warns that sizes read with int() become constants: that is intended (the
        # graph is specialised to H x W; the batch size is not read with int() and stays free).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # Recent PyTorch (2.13 here) deprecates torch.jit.trace; the caller asked for TorchScript
        # on purpose (the docstring says so), so one warning per traced submodule is noise.
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", DeprecationWarning)
        example = _example(model, height, width, batch)
        # check_trace would re-run the model to compare; the tests compare against eager.
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path


def export_onnx(
    model: PanoNet,
    path: str | os.PathLike,
    height: int,
    width: int,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamo: bool = True,
) -> Path:
    """Export ``InferenceWrapper(model)`` in eval mode to one self-contained ONNX file.

    Input "images" (B, 3, H, W) float32; outputs "semantic" and "embedding"; B is symbolic when
    ``dynamic_batch``. Pyramid pooling exports as fixed-window AveragePool (see
    :class:`panonet.models.icnet.PyramidPoolingSum`), so H and W are fixed.

    ``dynamo=True`` (default) uses the ``torch.export``-based exporter, PyTorch's supported path
    (about 20 s for this model on 2 CPU cores, mostly in its decompositions); ``dynamo=False``
    uses the deprecated TorchScript-based exporter (about 4 s). Both give the same outputs to
    float32 rounding in onnxruntime.

    Returns:
        ``path`` as a Path.

    Raises:
        ImportError: onnx / onnxscript are not installed (``pip install 'panonet[export]'``).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"export_onnx needs the onnx and onnxscript packages ({e.name} is missing); "
            "install them with: pip install 'panonet[export]'"
        ) from e
    path = Path(path)
    wrapper = InferenceWrapper(model)
    names = {"input_names": ["images"], "output_names": ["semantic", "embedding"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _EvalMode(model), torch.no_grad(), warnings.catch_warnings():
        wrapper.eval()
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch.export specialises a dimension of size 1, so trace a batch of 2 to keep B free.
        example = _example(model, height, width, 2 if dynamic_batch else 1)
        if dynamo:
            dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                **names,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                dynamic_shapes=dynamic_shapes,
            )
        else:
            axes = {n: {0: "batch"} for n in ("images", "semantic", "embedding")}
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                **names,
                opset_version=opset,
                dynamo=False,
                dynamic_axes=axes if dynamic_batch else None,
            )
    return path
