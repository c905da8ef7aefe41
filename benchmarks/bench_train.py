"""Benchmark of PanoNet training steps: forward, the 3-scale loss, backward and the optimizer.

A step is what the Trainer does (channels_last, AdamW, PanoNetLoss at the three scales), timed on
synthetic street scenes (panonet.data.synthetic) rendered into a temporary Cityscapes-layout
folder. Data sources: "memory" repeats one collated batch held in (pinned) host memory (the
step alone, with its upload); "loader" draws every batch from a DataLoader with the Trainer's
transforms (workers, pinned memory, persistent workers), so the two rows show whether loading
is the bottleneck (the 16 images are decoded into memory beforehand); "device" draws whole
decoded images from the loader and augments them on the device in the step
(TrainConfig.augment_on = "device", panonet.train.device_augment); "graph"
(CUDA, float32 and bf16) replays the memory row's step captured as a CUDA graph
(panonet.train.graphed_step), which shows what the host's launches cost.
Cases: the demo's setting (batch 4 of 128x256 crops) and the paper's (batch 16 of 512x1024).
On CUDA each case runs in float32 and with bf16 autocast (and fp16 with a GradScaler with
--fp16). Each row is the median of --steps timed steps after --warmup, each from the request
of its batch to the device's synchronization after it (a loader that cannot keep up shows as
waiting); images/s = batch / median.

    python benchmarks/bench_train.py [--device cpu|cuda|auto] [--quick] [--workers N]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import tempfile
import time
from pathlib import Path

import torch
from _common import print_table, resolve_device, summarize, synchronize, write_results
from torch.utils.data import DataLoader, Sampler

from panonet.data import CityscapesPanoptic
from panonet.data.augment import train_transforms
from panonet.data.synthetic import generate
from panonet.data.transforms import collate
from panonet.models import PanoNet
from panonet.train import OptimConfig, PanoNetLoss, build_optimizer
from panonet.train.device_augment import DeferItems, augment_on_device
from panonet.train.forward import forward_and_loss
from panonet.train.graphed_step import GraphedTrainStep
from panonet.train.loss import check_host_class_ids
from panonet.train.trainer import SeededItems, batch_to_device

# (name, batch, crop (h, w), image size (h, w), scale range): the demo's setting, and the
# paper's crop of 512x1024 at batch 16 per GPU out of Cityscapes-sized images scaled by 0.5-2.
CASES = [
    ("demo", 4, (128, 256), (256, 512), (0.75, 1.5)),
    ("paper", 16, (512, 1024), (1024, 2048), (0.5, 2.0)),
]
# Targets on one H200 (issue "Real time on one GPU"): ms per step, or images per second.
CUDA_TARGETS = {"demo": ("ms_per_step", 8.0), "paper": ("images_per_s", 600.0)}


# --loader-only rows: (augmentation in the "loader" or on the "device", images from "memory",
# from PNG files, or from a decoded store).
LOADER_ONLY_ROWS = [
    ("loader", "memory"),
    ("device", "memory"),
    ("loader", "png"),
    ("device", "png"),
    ("device", "store"),
]


class RandomKeys(Sampler[list[tuple[int, int]]]):
    """Endless batches of (index, epoch) keys for SeededItems, reshuffled every epoch."""

    def __init__(self, n: int, batch: int, seed: int = 0) -> None:
        self.n, self.batch, self.seed = n, batch, seed

    def __iter__(self):
        for epoch in itertools.count():
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch))
            keys = [(int(i), epoch) for i in order]
            keys += keys[: (-len(keys)) % self.batch]  # whole batches only
            for k in range(0, len(keys), self.batch):
                yield keys[k : k + self.batch]


def make_step(model, loss_fn, optimizer, device: torch.device, amp: str):
    """One training step on a collated batch, as Trainer._train_step does it."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    def step(batch) -> torch.Tensor:
        # Labels checked on the host, as the Trainer does: on the device it would synchronize
        # (device-augmented labels were checked by the loader's DeferItems).
        check_host_class_ids(batch["semantic"], model.num_classes, loss_fn.cfg.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        total, _, _ = forward_and_loss(
            model, loss_fn, *batch_to_device(batch, device), amp_dtype=dtype
        )
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        return total.detach()

    return step


@functools.cache
def prepared_dataset(root, images: str, compact: bool) -> CityscapesPanoptic:
    """The training split of ``root`` as :func:`make_loader` describes ``images``, made (and
    decoded or stored) once per benchmark run, not once per row."""
    store = Path(root) / "decoded" if images == "store" else None
    dataset = CityscapesPanoptic(
        root, "train", cache=images == "memory", compact=compact, decoded_dir=store
    )
    if images != "png":
        for index in range(len(dataset)):
            dataset[index]
    return dataset


def make_loader(root, batch, crop, scale, on_device, device, workers, images="memory"):
    """The Trainer's items and DataLoader over the scenes in ``root``. ``images``: "memory",
    every image decoded into the dataset's cache beforehand (the workers inherit it), so the
    loader rows compare the augmentation, not PNG decoding (~0.1 s per 1024x2048 image and
    core); "png", decoded at every read; "store", memory-mapped from a decoded store
    (TrainConfig.decoded_dir) filled beforehand. ``on_device``: whole items in compact dtypes
    for augmentation on the device (augment_on = "device")."""
    dataset = prepared_dataset(root, images, on_device)
    items = SeededItems(dataset, train_transforms(crop, scale=scale), seed=0, deferred=on_device)
    loader = DataLoader(
        items,
        batch_sampler=RandomKeys(len(dataset), batch),
        num_workers=workers,
        collate_fn=DeferItems(19, 255) if on_device else collate,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    return items, loader


def loader_rate(name, batch, crop, root, scale, source, images, device, args) -> dict:
    """Images per second the DataLoader delivers alone (no step): what the host can feed."""
    on_device = source == "device"
    _, loader = make_loader(root, batch, crop, scale, on_device, device, args.workers, images)
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    seconds = time.perf_counter() - start
    row = {
        "case": name,
        "batch": batch,
        "crop": f"{crop[0]}x{crop[1]}",
        "data": f"{source} alone, images from {images}",
        "workers": args.workers,
        "images_per_s": batch * args.steps / seconds,
        "ms_per_step": seconds / args.steps * 1e3,
    }
    print(row, flush=True)
    return row


def after_device_augmentation(step, items: SeededItems, device: torch.device):
    """``step`` on the loader's deferred items augmented on ``device`` first, as the Trainer's
    step does with augment_on = "device"."""

    def augmented_step(deferred) -> torch.Tensor:
        return step(augment_on_device(deferred, items, device))

    return augmented_step


def time_steps(step, batches, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step(next(batches))
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(batches)  # the loader's time counts: it is part of a step's wall time
        loss = step(batch)
        synchronize(device)
        times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise SystemExit(f"non-finite loss {float(loss)}: the benchmark's steps diverged")
    return times


def run_case(name, batch, crop, root, scale, device, amp, source, args) -> dict:
    torch.manual_seed(0)
    model = PanoNet().to(device).train().to(memory_format=torch.channels_last)
    what = {
        "case": name,
        "batch": batch,
        "crop": f"{crop[0]}x{crop[1]}",
        "amp": amp,
        "data": source,
    }
    graphed = source == "graph"
    optimizer = build_optimizer(model, OptimConfig(name="adamw"), capturable=graphed)
    loss_fn = PanoNetLoss().to(device)
    on_device = source == "device"
    items, loader = make_loader(root, batch, crop, scale, on_device, device, args.workers)
    batches = iter(loader)
    if source in ("memory", "graph"):
        # Kept on the host (pinned for a GPU) as the loader delivers it: the upload and the
        # host-side label check are part of the Trainer's step.
        fixed = {
            k: (v.pin_memory() if isinstance(v, torch.Tensor) and device.type == "cuda" else v)
            for k, v in next(batches).items()
        }
        batches = itertools.repeat(fixed)
    if graphed:
        dtype = {"bf16": torch.bfloat16}.get(amp)
        try:
            step = GraphedTrainStep(model, loss_fn, optimizer, fixed, amp_dtype=dtype).run
        except Exception as error:  # a failed capture is a result to report, not a crash
            print(f"{name} {amp} graph: capture failed: {error!r}", flush=True)
            return {**what, "met": "capture failed", "error": repr(error)}
    else:
        step = make_step(model, loss_fn, optimizer, device, amp)
    if on_device:
        step = after_device_augmentation(step, items, device)
    steps = args.steps if name == "demo" or device.type == "cuda" else args.cpu_paper_steps
    times = time_steps(step, batches, device, args.warmup, steps)
    stats = summarize(times)
    row = {
        **what,
        "workers": args.workers if source in ("loader", "device") else 0,
        "ms_per_step": stats["median_ms"],
        "images_per_s": batch / stats["median_ms"] * 1e3,
        **{f"step_{k}": v for k, v in stats.items()},
    }
    if device.type == "cuda":
        metric, target = CUDA_TARGETS[name]
        row["target"] = f"{metric.replace('_', ' ')} {'<=' if metric == 'ms_per_step' else '>='}"
        row["target"] += f" {target:g}"
        value = row[metric]
        row["met"] = bool(value <= target if metric == "ms_per_step" else value >= target)
    if device.type == "cuda":
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--cpu-paper-steps",
        type=int,
        default=3,
        help="timed steps of the paper's case on the CPU (tens of seconds each)",
    )
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--fp16", action="store_true", help="also fp16 autocast + GradScaler")
    parser.add_argument("--quick", action="store_true", help="only the demo case, 3 steps")
    parser.add_argument(
        "--loader-only",
        action="store_true",
        help="only the images per second the loader delivers (augmenting, or not: device)",
    )
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cases = CASES[:1] if args.quick else CASES
    if args.quick:
        args.steps, args.warmup = 3, 1
    amps = ["none"] + (["bf16"] + (["fp16"] if args.fp16 else []) if device.type == "cuda" else [])

    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for name, _, _, size, _ in cases:
            start = time.perf_counter()
            roots[name] = Path(tmp) / name
            generate(roots[name], train=16, val=1, size=size, progress=False)
            print(
                f"rendered 16 scenes of {size[0]}x{size[1]} in {time.perf_counter() - start:.1f} s"
            )
        rows = []
        for (name, batch, crop, _, scale), amp in itertools.product(cases, amps):
            root = roots[name]
            if args.loader_only:
                if amp == "none":
                    for source, images in LOADER_ONLY_ROWS:
                        rows.append(
                            loader_rate(
                                name, batch, crop, root, scale, source, images, device, args
                            )
                        )
                continue
            sources = ["memory", "loader", "device"]
            if device.type == "cuda" and amp in ("none", "bf16"):
                sources.append("graph")  # float16 needs a GradScaler, which no graph holds
            for source in sources:
                rows.append(run_case(name, batch, crop, root, scale, device, amp, source, args))

    print(f"\nPanoNet training steps on {device} (median of timed steps)")
    table = print_table(
        rows,
        [
            ("case", "case"),
            ("batch", "batch"),
            ("crop", "crop"),
            ("amp", "autocast"),
            ("data", "data"),
            ("ms_per_step", "ms / step"),
            ("images_per_s", "images / s"),
            ("target", "target"),
            ("met", "met"),
        ],
    )
    write_results("train", device, {"rows": rows, "table": table}, args.out)


if __name__ == "__main__":
    main()
