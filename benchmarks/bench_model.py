"""Speed and memory of the full PanoNet pipeline on full-resolution frames (default 2048x1024).

Stages, each timed on its own after warm-up with the device synchronized (median of runs):

* network: both ICNet branches, channels_last, BatchNorm folded as the Predictor runs it (CUDA:
  also float16 autocast and cudnn.benchmark; ``--compile`` adds torch.compile); beside it the
  same without the fold (the reference for it) and in bfloat16 autocast;
* clustering: class-wise mean-shift of the 1/4-scale embedding
  (:func:`panonet.inference.merge.instances_from_embedding`) on a synthetic *trained-like*
  embedding (each instance's pixels around its own center, as the discriminative loss makes
  them; an untrained network's embedding says nothing about clustering cost), plus the same on
  the untrained network's own output for reference;
* merge: logits upsampled + argmax, instance masking, panoptic ids;
* end to end: :class:`panonet.inference.Predictor` on a uint8 frame (untrained weights), with
  its defaults and as a real-time consumer runs it (no stage timings, maps left on the device,
  nothing read back before the frame's end), on CUDA also with that device work captured as a
  CUDA graph (``cuda_graph=True``), and with a bfloat16 network; and the host synchronizations
  per frame of each, counted by :mod:`panonet.sync_points` (the graph's by torch's CUDA sync
  debugging).

Correctness first: the synthetic frame's instances (all but slivers, see ``recovers``) must be
recovered one to one and the predictor's maps must be consistent, or the benchmark stops.

    python benchmarks/bench_model.py [--device cpu|cuda|auto] [--height 1024] [--width 2048]
                                     [--runs N] [--compile] [--out PATH]
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
import torch
from _common import print_table, resolve_device, summarize, synchronize, time_call, write_results

from panonet.data.labels import THING_TRAIN_IDS
from panonet.inference import Predictor
from panonet.inference.bandwidth import bandwidth_table
from panonet.inference.merge import (
    instances_from_embedding,
    panoptic_from_semantic_instance,
    semantic_from_logits,
)
from panonet.models import PanoNet
from panonet.models.panonet import preprocess
from panonet.sync_points import SyncPoints, cuda_syncs


def trained_like_frame(h: int, w: int, D: int = 12, seed: int = 0):
    """1/4-scale semantic map and embedding of a street-like frame: stuff blocks (classes 0-10)
    and 3-6 rectangular instances of each thing class (11-18), each instance's embedding within
    ~0.25-0.6 of its own center (centers >= 2 apart, like a trained delta_d = 1 embedding).

    Returns (embedding (D, h, w) float32, semantic (h, w) int64, instance ids (h, w) int64)."""
    rng = np.random.default_rng(seed)
    block = max(8, min(h, w) // 8)
    grid = rng.integers(0, 11, (h // block + 1, w // block + 1))
    sem = np.repeat(np.repeat(grid, block, 0), block, 1)[:h, :w].copy()
    inst = np.zeros((h, w), dtype=np.int64)
    k = 0
    for c in THING_TRAIN_IDS:
        for _ in range(rng.integers(3, 7)):
            bh, bw = rng.integers(h // 25 + 2, h // 4), rng.integers(w // 25 + 2, w // 6)
            y, x = rng.integers(0, h - bh), rng.integers(0, w - bw)
            k += 1
            sem[y : y + bh, x : x + bw] = c
            inst[y : y + bh, x : x + bw] = k
    centers: list[np.ndarray] = [np.zeros(D)]
    while len(centers) < k + 1:
        c = rng.uniform(-2.5, 2.5, size=D)
        if all(np.linalg.norm(c - o) >= 2.0 for o in centers):
            centers.append(c)
    centers_arr = np.array(centers)
    std = rng.uniform(0.25, 0.6, size=k + 1) / (np.sqrt(D) + 3)
    emb = centers_arr[inst].transpose(2, 0, 1) + rng.normal(size=(D, h, w)) * std[inst][None]
    # Instances hidden entirely by later ones do not exist.
    return (
        torch.tensor(emb, dtype=torch.float32),
        torch.tensor(sem, dtype=torch.int64),
        torch.tensor(inst, dtype=torch.int64),
    )


def recovers(found: torch.Tensor, truth: torch.Tensor, min_pixels: int = 64) -> bool:
    """Whether every true instance of at least min_pixels pixels is found as its own instance
    (one-to-one up to relabelling, 0 nowhere inside it). Smaller slivers (rectangles mostly
    covered by later ones) may merge into a neighbour: with bin seeding in 12-D a bin center can
    lie farther than the bandwidth from all of a tiny cluster's points, so no seed survives
    there, exactly as in scikit-learn."""
    sizes = torch.bincount(truth.flatten())
    big = torch.nonzero(sizes >= min_pixels).flatten()
    big = big[big > 0]
    mask = torch.isin(truth, big)
    a, b = truth[mask], found[mask]
    if (b == 0).any():
        return False
    pairs = torch.unique(torch.stack([a, b]), dim=1)
    return pairs.shape[1] == big.numel() == torch.unique(b).numel()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def host_syncs(predictors: dict, frame) -> dict:
    """Host synchronizations per frame each predictor makes on a GPU, counted by
    panonet.sync_points on any device (downloads and the stage timings' waits are not seen
    there: with output_device="cpu" add one per map, with stage timings one per stage)."""
    out = {}
    for name, predictor in predictors.items():
        with SyncPoints() as points:
            predictor.predict(frame)
        out[name] = {"total": points.total, **points.counts}
        print(f"host synchronizations per frame, {name}: {points.total} {dict(points.counts)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=None, help="timed runs (CPU 5, CUDA 50)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    runs = args.runs or (50 if cuda else 5)
    warmup = 5 if cuda else 1
    H, W = args.height, args.width
    torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    model = PanoNet().eval()
    params = model.count_parameters()
    predictor = Predictor(model, device=device, half=cuda, channels_last=True)
    # bfloat16: the CPU's low precision (AMX, AVX512-BF16), and the GPU's other one.
    bf16 = Predictor(model, device=device, precision="bfloat16", channels_last=True)
    # What a real-time consumer runs: no stage timings, maps left on the device, nothing read
    # back before the end of the frame.
    real_time = dict(device=device, half=cuda, channels_last=True, stage_timings=False)
    lean = Predictor(model, output_device=None, sync_free=True, **real_time)
    # The same, its device work captured as one CUDA graph per frame size (launch cost paid once).
    graphed = Predictor(model, output_device=None, cuda_graph=True, **real_time) if cuda else None
    net = predictor.model  # BatchNorm folded into the convolutions, as the Predictor runs it
    unfolded = model.to(device, memory_format=torch.channels_last)  # the reference for the fold
    if args.compile:
        net = torch.compile(net)
        unfolded = torch.compile(unfolded)
    bandwidth = bandwidth_table(None).to(device)

    frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    x = preprocess(frame, device=device).contiguous(memory_format=torch.channels_last)

    # --- correctness first -------------------------------------------------------------------
    h4, w4 = (H + 3) // 4, (W + 3) // 4
    emb, sem, truth = (t.to(device) for t in trained_like_frame(h4, w4))
    found = instances_from_embedding(emb, sem, bandwidth)
    if not recovers(found.cpu(), truth.cpu()):
        raise SystemExit("clustering of the synthetic frame does not recover its instances")
    out = predictor.predict(frame)
    pan, inst = out["panoptic"], out["instance"]
    if not (pan[inst > 0] >= 1000).all() or out["semantic"].shape != (H, W):
        raise SystemExit("predictor output is inconsistent")
    print(f"checked: {int(truth.max())} synthetic instances recovered; predictor maps consistent")

    # --- timing ------------------------------------------------------------------------------
    def network(module=net, dtype=torch.float16 if cuda else None):
        autocast = torch.autocast(device.type, dtype or torch.float32, enabled=dtype is not None)
        with torch.inference_mode(), autocast:
            return module(x)

    with torch.inference_mode():
        raw = network()
    logits = raw.semantic[0].float()
    raw_emb = raw.embedding[0].float().contiguous()
    sem_low = logits.argmax(1)
    sem_full = semantic_from_logits(logits, size=(H, W))
    inst_full = instances_from_embedding(emb, sem, bandwidth, size=(H, W))[None]

    def merge():
        s = semantic_from_logits(logits, size=(H, W))
        return panoptic_from_semantic_instance(s, inst_full)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    stages = [
        ("network (2 branches)", network),
        ("network, BatchNorm not folded", lambda: network(unfolded)),
        ("network, bfloat16 autocast", lambda: network(dtype=torch.bfloat16)),
        (
            "clustering, trained-like embedding",
            lambda: instances_from_embedding(emb, sem, bandwidth),
        ),
        (
            "clustering, untrained network output",
            lambda: instances_from_embedding(
                raw_emb, sem_low, bandwidth, semantic_fullres=sem_full
            ),
        ),
        ("merge (upsample + argmax + panoptic)", merge),
        ("end to end (Predictor, untrained)", lambda: predictor.predict(frame)),
        ("end to end (sync-free, maps on the device)", lambda: lean.predict(frame)),
        ("end to end (Predictor, bfloat16 network)", lambda: bf16.predict(frame)),
    ]
    if graphed is not None:
        # The first call captures the graph (in the warm-up); the timed calls replay it.
        stages.append(("end to end (sync-free, CUDA graph)", lambda: graphed.predict(frame)))
    rows = []
    for name, fn in stages:
        with torch.inference_mode():
            stats = summarize(time_call(fn, device, warmup=warmup, runs=runs))
        rows.append({"stage": name, **stats, "fps": 1e3 / stats["median_ms"]})
        print(f"  {name}: {stats['median_ms']:.2f} ms", flush=True)
    synchronize(device)
    peak = peak_memory_mb(device)
    network_ms = rows[0]["median_ms"]
    by_name = {r["stage"]: r["median_ms"] for r in rows}
    pipeline_ms = (
        network_ms
        + by_name["clustering, trained-like embedding"]
        + by_name["merge (upsample + argmax + panoptic)"]
    )
    rows.append(
        {
            "stage": "pipeline = network + trained-like clustering + merge",
            "median_ms": pipeline_ms,
            "fps": 1e3 / pipeline_ms,
        }
    )
    table = print_table(
        rows,
        [
            ("stage", "stage"),
            ("median_ms", "median ms"),
            ("p25_ms", "p25"),
            ("p75_ms", "p75"),
            ("fps", "FPS"),
        ],
    )
    kind = "peak GPU memory allocated" if cuda else "peak process RSS"
    print(f"\n{H}x{W}, params {params / 1e6:.2f} M, {kind} {peak:.0f} MB")
    syncs = host_syncs({"Predictor defaults": predictor, "sync-free": lean}, frame)
    if graphed is not None:
        # Counted on the device by torch's sync debugging (SyncPoints cannot see into a replay).
        count = len(cuda_syncs(lambda: graphed.predict(frame)))
        syncs["CUDA graph (torch sync debug)"] = {"total": count}
        print(f"host synchronizations per frame, CUDA graph (torch sync debug): {count}")
    write_results(
        "model",
        device,
        {
            "height": H,
            "width": W,
            "params": params,
            "half": cuda,
            "channels_last": True,
            "compile": args.compile,
            "fold_batchnorm": True,
            "peak_memory_mb": peak,
            "peak_memory_kind": kind,
            "synthetic_instances": int(truth.max()),
            "rows": rows,
            "table": table,
            "host_syncs_per_frame": syncs,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
