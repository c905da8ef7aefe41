"""panonet.inference.graphed and Predictor(cuda_graph=True): the frame's device work captured as
a CUDA graph gives the eager maps, frame after frame, with one wait for the GPU per frame."""

import warnings

import numpy as np
import pytest
import torch

from panonet.inference import Predictor
from panonet.inference.graphed import GraphedFrame
from panonet.models import PanoNet
from panonet.sync_points import cuda_syncs
from tests.conftest import requires_cuda


def test_cuda_graph_needs_a_cuda_device():
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device, got 'cpu'"):
        Predictor(PanoNet(), device="cpu", cuda_graph=True)
    with pytest.raises(ValueError, match="GraphedFrame: expected a CUDA device, got cpu"):
        GraphedFrame(
            lambda h: ({}, h), torch.zeros(1, 4, 4, 3, dtype=torch.uint8), torch.device("cpu")
        )


@requires_cuda
def test_cuda_graph_needs_sync_free_and_no_stage_timings():
    with pytest.raises(ValueError, match="needs sync_free=True and stage_timings=False"):
        Predictor(PanoNet(), device="cuda", cuda_graph=True)  # stage timings on by default
    with pytest.raises(ValueError, match="needs sync_free=True and stage_timings=False"):
        Predictor(PanoNet(), device="cuda", cuda_graph=True, stage_timings=False, sync_free=False)


def _frames(n: int, H: int, W: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


@requires_cuda
@pytest.mark.filterwarnings("ignore:the embedding looks untrained")
@pytest.mark.parametrize("half", [False, True])
def test_graphed_predictor_gives_the_eager_maps(half):
    torch.manual_seed(0)
    model = PanoNet()
    kwargs = dict(device="cuda", half=half, stage_timings=False, output_device=None)
    eager = Predictor(model, **kwargs)
    graphed = Predictor(model, cuda_graph=True, **kwargs)
    kept = []
    for frame in _frames(3, 128, 256) + _frames(2, 96, 160):  # two sizes: two captures
        want = eager.predict(frame)
        got = graphed.predict(frame)
        for key in ("semantic", "instance", "panoptic"):
            assert got[key].shape == frame.shape[:2]
            assert torch.equal(got[key], want[key]), key
        kept.append((got, want))
    assert len(graphed._graphs) == 2
    # The returned maps are the caller's: later frames do not overwrite them.
    for got, want in kept:
        assert torch.equal(got["panoptic"], want["panoptic"])


@requires_cuda
@pytest.mark.filterwarnings("ignore:the embedding looks untrained")
def test_frames_already_on_the_gpu_take_both_paths():
    # A (3, H, W) uint8 tensor on the GPU (e.g. decoded there): no page-locked upload, in the
    # eager and the graphed predictor alike; the same maps as from host memory.
    torch.manual_seed(0)
    model = PanoNet()
    kwargs = dict(device="cuda", stage_timings=False, output_device=None)
    eager = Predictor(model, **kwargs)
    graphed = Predictor(model, cuda_graph=True, **kwargs)
    frames = _frames(2, 128, 256)
    for frame in frames:
        on_gpu = torch.from_numpy(frame).permute(2, 0, 1).cuda()
        want = eager.predict(frame)
        for got in (eager.predict(on_gpu), graphed.predict(on_gpu), graphed.predict(frame)):
            for key in ("semantic", "instance", "panoptic"):
                assert torch.equal(got[key], want[key]), key


@requires_cuda
@pytest.mark.filterwarnings("ignore:the embedding looks untrained")
def test_graphed_predictor_waits_once_per_frame():
    torch.manual_seed(0)
    graphed = Predictor(
        PanoNet(), device="cuda", stage_timings=False, output_device=None, cuda_graph=True
    )
    first, second = _frames(2, 128, 256)
    graphed.predict(first)  # captures
    syncs = cuda_syncs(lambda: graphed.predict(second))
    assert len(syncs) <= 1, syncs


@requires_cuda
def test_graphed_predictor_still_raises_on_a_non_finite_embedding():
    torch.manual_seed(0)
    model = PanoNet()
    graphed = Predictor(model, device="cuda", stage_timings=False, cuda_graph=True)
    frame = _frames(1, 128, 256)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphed.predict(frame)  # captured with finite weights
    with torch.no_grad():  # in place: the graph reads the same tensors
        for p in graphed.model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match="embedding holds NaN or Inf"):
        graphed.predict(frame)
