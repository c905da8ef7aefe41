"""Where the time of the two ops goes: torch.profiler tables of their kernels on the bench data.

Profiles, after warm-up, N calls each of
  * discriminative_loss forward + backward (check_inputs=False, as training runs it) on the two
    sizes of bench_discriminative_loss.py;
  * cluster_instances on the 256x512 frame of bench_mean_shift.py (check_inputs=False, the
    bandwidth table on the device);
  * mean_shift on 100k 12-D points at bandwidth 0.5 (bench_mean_shift.py's blobs);
and prints, per case, the operations and kernels sorted by their own device time (CPU time on
the CPU), with the device and host time per call. The JSON has the same rows.

    python benchmarks/profile_kernels.py [--device cuda|cpu|auto] [--calls 10] [--rows 15]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _common import resolve_device, synchronize, write_results
from bench_discriminative_loss import make_batch
from bench_mean_shift import embedding_blobs, frame
from torch.profiler import ProfilerActivity, profile

from panonet.ops import cluster_instances, discriminative_loss, mean_shift


def cases(device: torch.device) -> list[tuple[str, Callable[[], object]]]:
    """(name, one call) of every profiled case, inputs made once."""
    out = []
    for B, H, W, k in [(2, 256, 512, 20), (1, 1024, 2048, 50)]:
        emb, ids = make_batch(B, 12, H, W, k, device)

        def loss_step(emb=emb, ids=ids):
            leaf = emb.detach().requires_grad_(True)
            discriminative_loss(leaf, ids, check_inputs=False).backward()

        out.append((f"discriminative_loss fwd+bwd {B}x12x{H}x{W}, {k} clusters", loss_step))
    emb, sem, _ = frame()
    emb, sem = emb.to(device), sem.to(device)
    bandwidth = torch.full((19,), -1.0, dtype=torch.float64)
    bandwidth[11:] = 0.5
    bandwidth = bandwidth.to(device)
    out.append(
        (
            "cluster_instances 256x512 frame",
            lambda: cluster_instances(emb, sem, bandwidth, check_inputs=False),
        )
    )
    points = torch.tensor(embedding_blobs(100_000, 30), device=device)
    out.append(("mean_shift 100k x 12, bw 0.5", lambda: mean_shift(points, 0.5)))
    return out


def profile_case(fn: Callable[[], object], device: torch.device, calls: int) -> dict:
    """Per operation / kernel: calls and own time per profiled call (ms), device or CPU."""
    for _ in range(3):
        fn()
    synchronize(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        synchronize(device)
    events = prof.key_averages()

    def own_us(e) -> float:
        if not cuda:
            return e.self_cpu_time_total
        # torch >= 2.4 names it device time; older versions CUDA time.
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    rows = [
        {"name": e.key, "calls_per_call": e.count / calls, "ms_per_call": own_us(e) / 1e3 / calls}
        for e in events
        if own_us(e) > 0
    ]
    rows.sort(key=lambda r: -r["ms_per_call"])
    total = sum(r["ms_per_call"] for r in rows)
    host = sum(e.self_cpu_time_total for e in events) / 1e3 / calls
    return {"rows": rows, "own_ms_per_call": total, "host_ms_per_call": host}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--calls", type=int, default=10, help="profiled calls per case")
    parser.add_argument("--rows", type=int, default=15, help="rows printed per case")
    parser.add_argument("--only", default=None, help="profile the cases whose name has this")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    kind = "device" if device.type == "cuda" else "CPU"
    results = {}
    for name, fn in cases(device):
        if args.only and args.only not in name:
            continue
        result = profile_case(fn, device, args.calls)
        results[name] = result
        print(
            f"\n{name}: {result['own_ms_per_call']:.3f} ms of {kind} time and "
            f"{result['host_ms_per_call']:.3f} ms of host time per call (profiled)"
        )
        print(f"| operation / kernel | calls per call | {kind} ms per call |\n|---|---|---|")
        for row in result["rows"][: args.rows]:
            print(f"| {row['name'][:90]} | {row['calls_per_call']:g} | {row['ms_per_call']:.4f} |")
    write_results("profile_kernels", device, {"calls": args.calls, "cases": results}, args.out)


if __name__ == "__main__":
    main()
