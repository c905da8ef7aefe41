"""``panonet demo``: the whole pipeline on synthetic street scenes, in one command.

synthesize a dataset -> train both stages -> search the per-class bandwidths -> evaluate on the
val split (Table I / II) -> pictures (Fig. 3-style overlays, Fig. 5 mirrored twins) -> a summary.

Everything goes under one output folder::

    demo-output/
      data/                 synthetic dataset (Cityscapes layout)
      run/                  training: checkpoints/{stage1,final}.pt, metrics.jsonl, config.json
      bandwidths.json       per-class bandwidths (panonet search-bandwidth)
      metrics.json          evaluation (panonet eval --out) + the mirror test + timings
      overlays/             Fig. 3-style pictures of val frames
      mirror/               Fig. 5-style pictures of mirrored val frames
      training_curves.png   loss terms and validation mIoU over the steps

Interrupting is safe: the dataset generator skips finished images and training resumes from its
last checkpoint, so running the same command again continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["CLASS_WEIGHTS", "FULL", "GPU", "QUICK", "DemoSettings", "run_demo", "settings_for"]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (the CPU time goes almost entirely into training)."""

    # (H, W) of the synthetic images.
    size: tuple[int, int]
    # Images in the train / val splits.
    train: int
    val: int
    # Optimisation steps of stage 1 (no coordinates) and stage 2 (with coordinates).
    stage1_steps: int
    stage2_steps: int
    # Training batch and crop (h, w).
    batch_size: int
    crop_size: tuple[int, int]
    # Train images the bandwidth search runs on, BN re-estimation images.
    search_images: int
    bn_images: int
    # Overlays and mirrored pictures written.
    num_vis: int
    # DataLoader workers.
    workers: int
    # Multiplier of the network's inner channel counts (PanoNet's `width`; 1: the paper's).
    width: float = 1.0
    # PanoNet's detail: which branches' 1/4 outputs also see 1/4 features (ICNet classifies
    # 1/8 ones): "none", "semantic" or "both".
    detail: str = "none"
    # Keep the decoded train images in memory (TrainConfig.cache_images).
    cache_images: bool = False
    # Farthest depth of instances in the synthetic scenes (metres; None: the generator's 70 m).
    max_thing_depth: float | None = None
    # Post-processing: cluster THING_VOTE_GROUPS together with a majority-vote class per
    # instance; drop instances smaller than this many output pixels, or, with min_size_search,
    # than the size of DEFAULT_MIN_SIZES with the best things PQ on the search images.
    vote_groups: bool = False
    min_instance_size: int = 0
    min_size_search: bool = False
    # The semantic map upsampled along the image's edges (GuidedUpsampling's defaults) instead
    # of bilinearly.
    guided_upsampling: bool = False


# Steps are the lever (docs/RESULTS.md, issue 14: 2100 -> 4200 -> 6300 steps of the paper's
# network took things PQ 9.5 -> 16.2 -> 20.6), so the CPU demo trains a half-width network
# (PanoNet width 0.5: 1/4 of the parameters; 71-85 ms per step on the AMD EPYC of 12-01,
# 125-165 ms on the Intel Xeon of 12-02, the decoded images cached and loaded in-process).
# 3200 + 1300 steps since 12-02 (eleventh session): with the minimum instance size searched,
# PQ 39.5, things PQ 22.6, mIoU 56.8, AP 11.4 on the val set (one seed), training 13 minutes on
# the Xeon; 6200 + 2600 steps, twice as long, gave 44.3 / 28.7 / 63.1 / 15.4.
FULL = DemoSettings(
    size=(256, 512),
    train=300,
    val=30,
    stage1_steps=3200,
    stage2_steps=1300,
    batch_size=4,
    crop_size=(128, 256),
    search_images=20,
    bn_images=64,
    num_vis=6,
    workers=0,
    width=0.5,
    cache_images=True,
    # Fragments of thing classes are mostly false positives (32 pixels, 2x2 at the 1/4
    # output: PQ_Th 8.7 -> 9.5 on a 2500-step model); since 12-02 the size is searched on the
    # search images: for the two seeds' stage-2 models of the paper's experiments it picked 512
    # and 1024, val things PQ 25.7 -> 29.7 and 23.6 -> 25.9 against 32 (docs/RESULTS.md).
    min_instance_size=32,
    min_size_search=True,
    # Thin things keep their shape (PanoNet upsamples bilinearly): on the 2026-12-02 demo
    # model, val PQ 39.5 -> 46.5, things PQ 22.6 -> 25.1, mIoU 56.8 -> 62.8 (docs/RESULTS.md);
    # since the fourteenth session the instances are clustered on the guided map too.
    guided_upsampling=True,
    # The semantic branch also classifies 1/4 features (ICNet: 1/8): val PQ 46.7 -> 49.4,
    # things PQ 25.8 -> 27.8, mIoU 62.8 -> 67.3, person PQ 6.0 -> 11.4 (docs/RESULTS.md,
    # fourteenth session; one seed); the embedding is the paper's.
    detail="semantic",
)

# On a GPU (`panonet demo --device cuda`, or auto with a GPU): the paper's network, twice the
# batch and 5600 steps, loaded by 4 workers. Sized from the H200's measured demo step (46 ms at
# batch 4, host-bound, before the loss stopped synchronizing with the host): about 4 minutes.
# Not yet run on a GPU; `make gpu-check GPU_CHECK_ARGS=--pipeline` runs it.
GPU = dataclasses.replace(
    FULL, stage1_steps=4000, stage2_steps=1600, batch_size=8, workers=4, width=1.0
)

# The CI smoke test: every stage of the pipeline on tiny images, in well under 2 minutes.
QUICK = DemoSettings(
    size=(64, 128),
    train=6,
    val=3,
    stage1_steps=3,
    stage2_steps=3,
    batch_size=2,
    crop_size=(64, 96),
    search_images=2,
    bn_images=4,
    num_vis=2,
    workers=0,
    width=0.5,
    cache_images=True,
    min_size_search=True,
    guided_upsampling=True,
    detail="semantic",
)


# Cross-entropy weight per trainId: sqrt(median frequency / frequency) of the class's pixels in
# the synthetic train split (every 3rd of the 300 demo images), clipped to [0.25, 3]; 1 for the
# classes the scenes never contain (wall, fence, train). Small things (person 1.06, rider 1.79,
# bicycle 1.64) weigh 4-7x road and building. Measured with the demo's recipe (1250 steps):
# val mIoU 40.2 -> 44.7, PQ 25.6 -> 27.5, AP 2.4 -> 3.4 (docs/RESULTS.md).
CLASS_WEIGHTS = (
    0.25, 0.66, 0.25, 1.0, 1.0, 1.28, 3.0, 3.0, 0.42, 1.57,
    0.66, 1.06, 1.79, 0.43, 0.5, 0.95, 1.0, 1.57, 1.64,
)  # fmt: skip


def settings_for(quick: bool, device: str) -> DemoSettings:
    """The demo's sizes: :data:`QUICK` when ``quick``, else :data:`GPU` on a CUDA ``device``
    ("cuda", "cuda:N") and :data:`FULL` elsewhere."""
    if quick:
        return QUICK
    return GPU if torch.device(device).type == "cuda" else FULL


def train_config(settings: DemoSettings, data: Path, device: str, progress: bool):
    """The demo's :class:`~panonet.train.TrainConfig` (``configs/panonet_synthetic.toml``'s
    choices at the demo's sizes)."""
    from panonet.train.config import LossConfig, OptimConfig, TrainConfig

    return TrainConfig(
        data_root=str(data),
        crop_size=settings.crop_size,
        # Mild scaling: at 256x512 the small things (people, bicycles) are a few pixels at the
        # network's 1/4 output resolution already.
        scale=(0.75, 1.5),
        batch_size=settings.batch_size,
        workers=settings.workers,
        cache_images=settings.cache_images,
        width=settings.width,
        detail=settings.detail,
        # Stage 2 adds 8 x (x, y) to the embedding (PanoNet's coord_output; not in the paper):
        # mirrored twins merged 10 % instead of 32 %, things PQ and AP up ~3 (docs/RESULTS.md).
        coord_output=8.0,
        stage1_steps=settings.stage1_steps,
        stage2_steps=settings.stage2_steps,
        # AdamW: the paper's Adadelta is meant for pretrained starts (see the synthetic config).
        # lr 3e-3: at 7000 steps of the half-width network it reached things PQ 18.7, AP 10.6
        # against 16.9 and 9.1 with 2e-3 (which beat 1e-3 at 2100 steps of the full width;
        # docs/RESULTS.md, issue 14; one seed each), though more mirrored twins merged.
        optim=OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-4),
        # The same lr in stage 2: the zero-initialised coordinate channels need it to grow in.
        stage2_optim=OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-4),
        loss=LossConfig(class_weights=CLASS_WEIGHTS),
        val_every=0,
        val_images=min(settings.val, 20),
        checkpoint_every=100,
        bn_recalibration_images=settings.bn_images,
        freeze_bn_stage2=True,
        device=device,
        progress=progress,
    )


def run_demo(
    out: str | os.PathLike = "demo-output",
    *,
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the demo pipeline into ``out`` (see the module docstring) and returns the metrics.

    Args:
        out: output folder; an earlier (interrupted) demo there is continued.
        quick: the tiny CI version (:data:`QUICK`) instead of :data:`FULL` (:data:`GPU` on a
            CUDA device).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        progress: progress bars.
        log: where the step headers and tables go.

    Returns:
        The dict written to ``<out>/metrics.json``.
    """
    from panonet._atomic import write_json_atomic
    from panonet.data.cityscapes import CityscapesPanoptic
    from panonet.data.synthetic import generate
    from panonet.evaluation.mirror import format_mirror, run_mirror_test
    from panonet.evaluation.run import evaluate_model, format_tables
    from panonet.inference.bandwidth_search import search_bandwidths
    from panonet.inference.guided_upsample import GuidedUpsampling
    from panonet.inference.merge import THING_VOTE_GROUPS
    from panonet.inference.min_size_search import search_min_instance_size
    from panonet.inference.predictor import Predictor
    from panonet.models.checkpoint import load_model
    from panonet.train.trainer import FINAL_CHECKPOINT, STAGE1_CHECKPOINT, run_training
    from panonet.viz import training_curves

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = settings_for(quick, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, run = out / "data", out / "run"
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def step(name: str, title: str) -> Callable[[], None]:
        log(f"\n== {title}")
        t0 = time.perf_counter()

        def done() -> None:
            seconds[name] = round(time.perf_counter() - t0, 1)

        return done

    done = step(
        "synth",
        f"1/5 synthesize {settings.train}+{settings.val} street scenes "
        f"{settings.size[0]}x{settings.size[1]} -> {data}",
    )
    generate(
        data,
        train=settings.train,
        val=settings.val,
        size=settings.size,
        progress=progress,
        max_thing_depth=settings.max_thing_depth,
    )
    done()

    cfg = train_config(settings, data, device, progress)
    final = run / "checkpoints" / FINAL_CHECKPOINT
    done = step(
        "train",
        f"2/5 train: stage 1 {settings.stage1_steps} steps, stage 2 (coordinates) "
        f"{settings.stage2_steps} steps, batch {settings.batch_size} on {device} -> {run}",
    )
    if final.is_file():
        log(f"already trained: {final}")
    else:
        # "auto" continues from the newest checkpoint of an interrupted demo, or starts afresh.
        run_training(cfg, run, resume="auto")
    training_curves(run / "metrics.jsonl", out / "training_curves.png")
    done()

    done = step(
        "search",
        f"3/5 search the per-class bandwidths and the minimum instance size on "
        f"{settings.search_images} train images",
    )
    model = load_model(final)
    train_set = CityscapesPanoptic(data, "train")
    vote_groups = THING_VOTE_GROUPS if settings.vote_groups else None
    guided = GuidedUpsampling() if settings.guided_upsampling else None
    search = search_bandwidths(
        model,
        train_set,
        images=settings.search_images,
        device=device,
        progress=progress,
        vote_groups=vote_groups,
        guided_upsampling=guided,
    )
    bw_path = search.save(out / "bandwidths.json")
    names = search.to_json()["bandwidths"]
    log(", ".join(f"{k} {v:g}" for k, v in names.items()) + f"  -> {bw_path}")
    # One predictor (one folded copy of the network) for the size search and the evaluation.
    predictor = Predictor(
        model,
        device=device,
        bandwidths=bw_path,
        min_instance_size=settings.min_instance_size,
        vote_groups=vote_groups,
        guided_upsampling=guided,
    )
    size_search = None
    if settings.min_size_search:
        size_search = search_min_instance_size(
            predictor,
            train_set,
            images=settings.search_images,
            progress=progress,
        )
        predictor = predictor.with_settings(min_instance_size=size_search.best)
        scores = ", ".join(
            f"{c}: {100 * p:.1f}"
            for c, p in zip(size_search.candidates, size_search.things_pq, strict=True)
        )
        log(f"minimum instance size {size_search.best} pixels (things PQ by size: {scores})")
    done()

    done = step("eval", f"4/5 evaluate on the {settings.val} val images")
    val_set = CityscapesPanoptic(data, "val")
    post = {
        "min_instance_size": predictor.min_instance_size,
        "vote_groups": vote_groups,
        "guided_upsampling": guided,
    }
    result = evaluate_model(
        predictor,
        val_set,
        progress=progress,
        save_vis=out / "overlays",
        num_vis=settings.num_vis,
    )
    log(format_tables(result))
    done()

    done = step("mirror", "5/5 mirrored twins (paper Fig. 5): twin pairs merged into one instance")
    stage1 = load_model(run / "checkpoints" / STAGE1_CHECKPOINT)
    stage1_search = search_bandwidths(
        stage1,
        train_set,
        images=settings.search_images,
        device=device,
        progress=progress,
        vote_groups=vote_groups,
    )
    mirror = {
        "final (with coordinates)": run_mirror_test(
            predictor,
            val_set,
            progress=progress,
            save_vis=out / "mirror",
            num_vis=settings.num_vis,
        ),
        # Stage 1 has no coordinate input: the contrast the test is about (it also trained
        # fewer steps, so it is an illustration, not the controlled ablation of docs/RESULTS.md).
        # Its own bandwidths: an embedding without the coordinates added is tighter.
        "stage 1 (no coordinates)": run_mirror_test(
            Predictor(
                stage1,
                device=device,
                bandwidths=stage1_search.best,
                **post,
            ),
            val_set,
            progress=progress,
        ),
    }
    log(format_mirror(mirror))
    done()

    seconds["total"] = round(time.perf_counter() - start, 1)
    metrics = {
        "settings": dataclasses.asdict(settings),
        "device": device,
        "evaluation": result,
        "bandwidths": names,
        "bandwidths_stage1": stage1_search.to_json()["bandwidths"],
        "min_instance_size": predictor.min_instance_size,
        "min_size_search": None if size_search is None else size_search.to_json(),
        "mirror_test": mirror,
        "seconds": seconds,
    }
    write_json_atomic(out / "metrics.json", metrics)
    log(
        f"\ndemo finished in {seconds['total'] / 60:.1f} min: PQ {100 * _pq(result):.1f}, "
        f"mIoU {100 * result['semantic']['miou']:.1f}; outputs in {out}/ (metrics.json, "
        "overlays/, mirror/, training_curves.png, bandwidths.json, run/checkpoints/final.pt)"
    )
    return metrics


def _pq(result: dict[str, Any]) -> float:
    return float(result["panoptic"]["All"]["pq"])
