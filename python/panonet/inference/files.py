"""Prediction over files: images, folders of images and videos, with outputs written to disk.

Used by ``panonet predict``. For an image ``street.png`` it writes, under the output folder,
``street_panoptic.png`` (16-bit PNG of Cityscapes panoptic ids, the format of
``gtFine_instanceIds.png``) and ``street_overlay.png`` (the overlay next to the panoptic colours).
For a video ``drive.mp4`` it writes ``drive_overlay.mp4`` (overlaid frames) and the per-frame
panoptic PNGs in ``drive_panoptic/``. A video runs as three overlapping stages: a thread
decodes frames, the calling thread runs the predictor, a thread writes the PNGs and encodes the
overlay video; the summary reports frames per second and which stage limited it.

An input that cannot be read is reported by name and skipped; the rest still run. An output
that already exists is not overwritten unless ``overwrite=True`` (the input is skipped and
reported instead).
"""

from __future__ import annotations

import os
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from panonet._atomic import publish_mode, write_atomic
from panonet.inference.predictor import Predictor
from panonet.viz import side_by_side

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "PredictionSummary",
    "VideoRun",
    "expand_inputs",
    "predict_files",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
STAGES = ("network", "semantic", "clustering", "panoptic", "total")


@dataclass
class PredictionSummary:
    """What a :func:`predict_files` run did.

    Attributes:
        frames: frames predicted (images + video frames).
        written: output files written.
        skipped: (input, reason) for every input not (fully) processed.
        timings: per stage, the per-frame milliseconds.
        videos: per video predicted, its throughput and busiest stage.
    """

    frames: int = 0
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    videos: list[VideoRun] = field(default_factory=list)

    def medians(self) -> dict[str, float]:
        """Median milliseconds per frame of each stage (empty if no frame ran)."""
        return {k: statistics.median(v) for k, v in self.timings.items() if v}

    def report(self) -> str:
        """A few human-readable lines: counts, skipped inputs and the per-frame timing medians."""
        lines = [f"{self.frames} frame(s) predicted, {len(self.written)} file(s) written"]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped]
        med = self.medians()
        if med:
            lines.append(
                "median ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
            )
        lines += [video.report() for video in self.videos]
        return "\n".join(lines)


@dataclass
class VideoRun:
    """Throughput of one video: its three overlapping stages and the one that limited it.

    Attributes:
        name: the video's file name.
        frames: frames predicted.
        seconds: wall time from the first decoded frame to the last encoded one.
        busy: seconds each stage ("decode", "model", "encode") spent working; the stages run
            concurrently, so the largest bounds the throughput.
    """

    name: str
    frames: int
    seconds: float
    busy: dict[str, float]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def limited_by(self) -> str:
        return max(self.busy, key=self.busy.__getitem__)

    def report(self) -> str:
        busy = ", ".join(f"{k} {v:.1f} s" for k, v in self.busy.items())
        return (
            f"{self.name}: {self.frames} frames in {self.seconds:.1f} s, {self.fps:.1f} frames/s; "
            f"busy: {busy}; limited by {self.limited_by}"
        )


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image and video files named by ``inputs`` (folders expanded, sorted, non-recursive).

    Returns:
        (files, problems): the files to process, and (name, reason) for inputs that are missing
        or of an unknown type.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            if not found:
                problems.append((str(path), "folder holds no image or video files"))
            files += found
        elif not path.exists():
            problems.append((str(path), "no such file or folder"))
        elif path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            files.append(path)
        else:
            problems.append(
                (str(path), f"unknown file type {path.suffix!r}; expected an image or a video")
            )
    return files, problems


def _save_panoptic(path: Path, panoptic: np.ndarray) -> None:
    # Cityscapes ids reach 33 * 1000 + 999: a 16-bit PNG holds them, as gtFine_instanceIds does.
    ids = panoptic.astype(np.uint16)
    write_atomic(path, lambda tmp: Image.fromarray(ids).save(tmp, format="PNG"))


def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    write_atomic(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))


def _record(summary: PredictionSummary, timings: dict[str, float]) -> None:
    summary.frames += 1
    for stage in STAGES:
        if stage in timings:
            summary.timings[stage].append(timings[stage])


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _predict_image(
    predictor: Predictor, path: Path, out_dir: Path, overwrite: bool, summary: PredictionSummary
) -> None:
    outputs = [out_dir / f"{path.stem}_panoptic.png", out_dir / f"{path.stem}_overlay.png"]
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        summary.skipped.append((str(path), f"{existing[0]} exists (use --overwrite)"))
        return
    try:
        image = _read_image(path)
    except Exception as err:  # PIL raises several types for broken files
        summary.skipped.append((str(path), f"cannot read image: {err}"))
        return
    result = predictor.predict(image)
    panoptic = result["panoptic"].numpy()
    _save_panoptic(outputs[0], panoptic)
    _save_rgb(outputs[1], side_by_side(image, panoptic))
    summary.written += outputs
    _record(summary, result["timings"])


def _video_frames(capture, batch: int, busy: dict[str, float]) -> Iterator[list[np.ndarray]]:
    import cv2

    frames: list[np.ndarray] = []
    while True:
        start = time.perf_counter()
        ok, bgr = capture.read()
        if ok:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        busy["decode"] += time.perf_counter() - start
        if not ok:
            break
        if len(frames) == batch:
            yield frames
            frames = []
    if frames:
        yield frames


# Marks the end of a stage's stream in the queues between the video stages.
_END = object()


class _StageFailed(Exception):
    """Another stage of the video pipeline failed; its exception is the one to raise."""


def _put(q: queue.Queue, item, failed: threading.Event) -> None:
    """q.put that gives up (raises _StageFailed) once another stage has failed, so that no
    stage waits forever on a full queue nobody empties."""
    while True:
        if failed.is_set():
            raise _StageFailed
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, failed: threading.Event):
    while True:
        if failed.is_set():
            raise _StageFailed
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _predict_video(
    predictor: Predictor,
    path: Path,
    out_dir: Path,
    overwrite: bool,
    batch: int,
    summary: PredictionSummary,
    progress: bool,
) -> None:
    import cv2

    video_out = out_dir / f"{path.stem}_overlay.mp4"
    frame_dir = out_dir / f"{path.stem}_panoptic"
    if (video_out.exists() or frame_dir.exists()) and not overwrite:
        summary.skipped.append((str(path), f"{video_out} exists (use --overwrite)"))
        return
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        summary.skipped.append((str(path), "cannot read video (no decodable frame)"))
        return
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    h, w = first.shape[:2]
    frame_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{video_out.stem}.", suffix=".mp4", dir=out_dir)
    os.close(fd)
    publish_mode(tmp)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (2 * w, h))
    busy = {"decode": 0.0, "model": 0.0, "encode": 0.0}
    decoded: queue.Queue = queue.Queue(maxsize=4)  # batches of RGB frames
    predicted: queue.Queue = queue.Queue(maxsize=4)  # (frames, panoptic maps, per-frame ms)
    failed = threading.Event()
    errors: list[BaseException] = []

    def stage(body):
        def run() -> None:
            try:
                body()
            except _StageFailed:
                pass
            except BaseException as err:  # handed to the calling thread, which raises it
                errors.append(err)
                failed.set()

        return threading.Thread(target=run, daemon=True)

    def decode() -> None:
        for frames in _video_frames(capture, batch, busy):
            _put(decoded, frames, failed)
        _put(decoded, _END, failed)

    bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress)

    def encode() -> None:
        index = 0
        while (item := _get(predicted, failed)) is not _END:
            frames, panoptics, per_frame = item
            start = time.perf_counter()
            for image, panoptic in zip(frames, panoptics, strict=True):
                target = frame_dir / f"frame_{index:06d}_panoptic.png"
                _save_panoptic(target, panoptic)
                summary.written.append(target)
                writer.write(cv2.cvtColor(side_by_side(image, panoptic), cv2.COLOR_RGB2BGR))
                _record(summary, per_frame)
                index += 1
            busy["encode"] += time.perf_counter() - start
            bar.update(len(frames))

    threads = [stage(decode), stage(encode)]
    start = time.perf_counter()
    frames_done = 0
    try:
        for thread in threads:
            thread.start()
        try:
            while (frames := _get(decoded, failed)) is not _END:
                tick = time.perf_counter()
                result = predictor.predict(np.stack(frames))
                panoptics = result["panoptic"].numpy()
                busy["model"] += time.perf_counter() - tick
                per_frame = {k: v / len(frames) for k, v in result["timings"].items()}
                _put(predicted, (frames, panoptics, per_frame), failed)
                frames_done += len(frames)
            _put(predicted, _END, failed)
        except _StageFailed:
            pass
        except BaseException:
            failed.set()  # stops the other stages (Ctrl-C too)
            raise
        finally:
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
        bar.close()
        writer.release()
        os.replace(tmp, video_out)
        summary.written.append(video_out)
        summary.videos.append(VideoRun(path.name, frames_done, time.perf_counter() - start, busy))
    except BaseException:
        bar.close()
        writer.release()
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        capture.release()


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    batch: int = 1,
    progress: bool = True,
) -> PredictionSummary:
    """Predicts every image and video named by ``inputs`` and writes the outputs.

    Args:
        predictor: the configured :class:`~panonet.inference.Predictor`.
        inputs: image files, video files and folders of them.
        out_dir: where the outputs go (created).
        overwrite: replace existing outputs instead of skipping those inputs.
        batch: video frames predicted together.
        progress: progress bars.

    Returns:
        :class:`PredictionSummary`; inputs that could not be processed are in ``skipped``.
    """
    if batch < 1:
        raise ValueError(f"predict_files: expected batch >= 1, got {batch}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, problems = expand_inputs(inputs)
    summary = PredictionSummary(skipped=list(problems))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    for path in tqdm(images, desc="images", unit="image", disable=not progress or not images):
        _predict_image(predictor, path, out, overwrite, summary)
    for path in videos:
        _predict_video(predictor, path, out, overwrite, batch, summary, progress)
    return summary
