"""predict_files: images, folders, videos, unreadable inputs, the overwrite rule."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from panonet.inference import Predictor
from panonet.inference.files import expand_inputs, predict_files
from panonet.models import PanoNet
from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)

H, W = 64, 96


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions(native_cpu_convolutions):  # noqa: F811
    yield


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(PanoNet().eval())


def write_image(path, seed: int) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(image).save(path)
    return image


def test_folder_of_images_with_a_corrupt_one(tmp_path, predictor):
    src = tmp_path / "in"
    src.mkdir()
    a = write_image(src / "a.png", 0)
    write_image(src / "b.jpg", 1)
    (src / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "notes.txt").write_text("hi")
    out = tmp_path / "out"
    summary = predict_files(
        predictor, [src, tmp_path / "missing.png", tmp_path / "notes.txt"], out, progress=False
    )
    assert summary.frames == 2
    names = sorted(p.name for p in summary.written)
    assert names == ["a_overlay.png", "a_panoptic.png", "b_overlay.png", "b_panoptic.png"]
    skipped = dict(summary.skipped)
    assert "cannot read image" in skipped[str(src / "broken.png")]
    assert "no such file" in skipped[str(tmp_path / "missing.png")]
    assert "unknown file type" in skipped[str(tmp_path / "notes.txt")]
    # The panoptic PNG holds the predictor's ids exactly (16-bit).
    saved = np.asarray(Image.open(out / "a_panoptic.png")).astype(np.int64)
    assert np.array_equal(saved, predictor.predict(a)["panoptic"].numpy())
    assert np.asarray(Image.open(out / "a_overlay.png")).shape == (H, 2 * W, 3)
    assert set(summary.medians()) >= {"network", "clustering", "total"}
    assert "skipped" in summary.report()


def test_existing_outputs_need_overwrite(tmp_path, predictor):
    write_image(tmp_path / "a.png", 2)
    out = tmp_path / "out"
    first = predict_files(predictor, [tmp_path / "a.png"], out, progress=False)
    assert first.frames == 1
    before = (out / "a_panoptic.png").stat().st_mtime_ns
    again = predict_files(predictor, [tmp_path / "a.png"], out, progress=False)
    assert again.frames == 0 and "use --overwrite" in again.skipped[0][1]
    assert (out / "a_panoptic.png").stat().st_mtime_ns == before
    forced = predict_files(predictor, [tmp_path / "a.png"], out, overwrite=True, progress=False)
    assert forced.frames == 1


def test_video(tmp_path, predictor):
    path = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (W, H))
    for k in range(3):
        writer.write(np.full((H, W, 3), 40 * k, dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    summary = predict_files(predictor, [path], out, batch=2, progress=False)
    assert summary.frames == 3, summary.report()
    assert len(list((out / "drive_panoptic").glob("frame_*_panoptic.png"))) == 3
    capture = cv2.VideoCapture(str(out / "drive_overlay.mp4"))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (H, 2 * W, 3)
        frames += 1
    capture.release()
    assert frames == 3


def test_unreadable_video_is_skipped(tmp_path, predictor):
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    summary = predict_files(predictor, [tmp_path / "bad.mp4"], tmp_path / "out", progress=False)
    assert summary.frames == 0 and "cannot read video" in summary.skipped[0][1]


def test_expand_inputs_and_bad_batch(tmp_path, predictor):
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([tmp_path / "empty"])
    assert files == [] and "no image or video" in problems[0][1]
    with pytest.raises(ValueError, match="batch >= 1"):
        predict_files(predictor, [], tmp_path, batch=0)


def write_video(path, frames: int = 5) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (W, H))
    for k in range(frames):
        writer.write(np.full((H, W, 3), 40 * k, dtype=np.uint8))
    writer.release()


def test_video_reports_throughput_and_the_limiting_stage(tmp_path, predictor):
    write_video(tmp_path / "drive.mp4", frames=5)
    summary = predict_files(
        predictor, [tmp_path / "drive.mp4"], tmp_path / "out", batch=2, progress=False
    )
    (run,) = summary.videos
    assert run.name == "drive.mp4" and run.frames == 5 and run.fps > 0
    assert set(run.busy) == {"decode", "model", "encode"} and run.busy["model"] > 0
    assert run.limited_by in run.busy
    assert "frames/s" in summary.report() and f"limited by {run.limited_by}" in summary.report()


class _FailingPredictor:
    """Predicts the first batch, then raises: a failure inside the model stage."""

    def __init__(self, predictor) -> None:
        self.predictor, self.calls = predictor, 0

    def predict(self, image):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("model stage failed")
        return self.predictor.predict(image)


def test_video_stage_failures_propagate_and_leave_no_video(tmp_path, predictor, monkeypatch):
    write_video(tmp_path / "drive.mp4", frames=6)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="model stage failed"):
        predict_files(
            _FailingPredictor(predictor), [tmp_path / "drive.mp4"], out, batch=2, progress=False
        )
    assert not (out / "drive_overlay.mp4").exists()
    assert not list(out.glob(".drive_overlay.*"))  # the temporary video is removed too

    import panonet.inference.files as files_module

    def broken_save(path, panoptic):
        raise OSError("disk full")

    monkeypatch.setattr(files_module, "_save_panoptic", broken_save)
    with pytest.raises(OSError, match="disk full"):  # a failure in the encoding stage
        predict_files(
            predictor, [tmp_path / "drive.mp4"], out, batch=2, overwrite=True, progress=False
        )
    assert not (out / "drive_overlay.mp4").exists()
