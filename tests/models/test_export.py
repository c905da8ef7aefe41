"""TorchScript and ONNX exports reproduce the eager model.

Tolerance: max |exported - eager| <= 1e-5 * max |eager| per output. float32 rounding is ~6e-8
per operation; through ~100 layers with reductions of up to 4608 terms evaluated in another
order/algorithm (onnxruntime's kernels vs PyTorch's) the observed error is ~1e-6 of the output's
scale, so 1e-5 leaves a 10x margin, while any real mistake (a BN left in training mode, another
resize mode, misplaced coordinates, a wrong pooling window) changes outputs by O(scale).
TorchScript runs the very same kernels and is held to the same bound (it is exact in practice).
"""

import pytest
import torch

from panonet.export import export_onnx, export_torchscript
from panonet.models.panonet import PanoNet
from tests.models.helpers import assert_close_to_scale, randomize_batchnorm

H, W = 64, 96
REL = 1e-5


@pytest.fixture(scope="module")
def model() -> PanoNet:
    torch.manual_seed(0)
    return randomize_batchnorm(PanoNet())  # left in training mode on purpose


def _eager(model: PanoNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train(was)
    return out.semantic[0], out.embedding[0]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_eager(model, tmp_path):
    path = export_torchscript(model, tmp_path / "m.pt", H, W)
    assert model.training, "export must restore the model's mode"
    traced = torch.jit.load(str(path))
    for batch in (1, 2):  # traced with batch 1; the batch size stays free
        x = torch.randn(batch, 3, H, W)
        with torch.no_grad():
            sem, emb = traced(x)
        ref_sem, ref_emb = _eager(model, x)
        assert sem.shape == (batch, 19, 16, 24) and emb.shape == (batch, 12, 16, 24)
        assert_close_to_scale(sem, ref_sem, REL, "torchscript semantic")
        assert_close_to_scale(emb, ref_emb, REL, "torchscript embedding")


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
def test_onnx_matches_eager(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "m.onnx", H, W)  # the torch.export-based exporter
    assert model.training
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["semantic", "embedding"]
    for batch in (1, 2):  # dynamic batch (exported with an example of batch 2)
        x = torch.randn(batch, 3, H, W)
        sem, emb = session.run(None, {"images": x.numpy()})
        ref_sem, ref_emb = _eager(model, x)
        assert_close_to_scale(sem, ref_sem, REL, "onnx semantic")
        assert_close_to_scale(emb, ref_emb, REL, "onnx embedding")


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
def test_onnx_with_coordinates_added_to_the_embedding(tmp_path):
    # coord_output: the exported graph makes the output coordinates itself, for any batch size.
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    model = randomize_batchnorm(PanoNet(width=0.25, coord_output=8.0)).eval()
    session = ort.InferenceSession(
        str(export_onnx(model, tmp_path / "m.onnx", H, W)), providers=["CPUExecutionProvider"]
    )
    for batch in (1, 3):
        x = torch.randn(batch, 3, H, W)
        sem, emb = session.run(None, {"images": x.numpy()})
        ref_sem, ref_emb = _eager(model, x)
        assert_close_to_scale(sem, ref_sem, REL, "onnx semantic")
        assert_close_to_scale(emb, ref_emb, REL, "onnx embedding")
