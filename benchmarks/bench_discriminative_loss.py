"""Benchmark of panonet.ops.discriminative_loss, forward + backward.

Compares (a) the fused op, (b) a vectorized pure-torch implementation (torch.unique +
index_add), (c) a per-cluster Python loop as most public repositories write it; (a) also with
check_inputs=False, as training calls it on CUDA (no host synchronization). Correctness of (a)
and (c) against (b) is checked first (values and gradients), then each is warmed up and timed
with device synchronization around every call; the table reports medians. For the op, "back
to back" is the time per call of a run of calls queued without waiting (device events): the
rate a training loop sustains, where the host's launches overlap the GPU's work.

Beside the timings: the memory floor of each case (the least traffic forward + backward must
move, over --bandwidth-gbs), the GPU targets of the op (met / not met, CUDA only), and the op on
the same pixels in a random order per image ("shuffled ids": the ids are no longer spatially
coherent), with the target ratio shuffled / coherent on the CPU.

    python benchmarks/bench_discriminative_loss.py [--device cpu|cuda|auto] [--runs 20]
        [--bandwidth-gbs 4300]
"""

from __future__ import annotations

import argparse
import functools
import math

import torch
from _common import (
    print_table,
    resolve_device,
    summarize,
    time_back_to_back,
    time_call,
    write_results,
)

from panonet.ops import discriminative_loss

MARGINS = {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 6.0, "ignore_index": -1}
WEIGHTS = (1.0, 1.0, 0.1)
# (B, D, H, W, clusters): a 1/4-scale Cityscapes batch, and one full-resolution frame.
SIZES = [(2, 12, 256, 512, 20), (1, 12, 1024, 2048, 50)]
# GPU targets of the op, median forward + backward in ms, per case of SIZES.
CUDA_TARGETS_MS = {(2, 12, 256, 512, 20): 0.15, (1, 12, 1024, 2048, 50): 0.4}
# Cases also timed with their pixels shuffled, and the CPU target of shuffled / coherent.
SHUFFLED_SIZES = [(2, 12, 256, 512, 20)]
CPU_SHUFFLED_TARGET_RATIO = 1.5
# Default bandwidth of the memory floor on CUDA: an H200's HBM3e, GB/s.
H200_BANDWIDTH_GBS = 4300.0


def make_batch(B, D, H, W, clusters, device, seed=0):
    """An instance map of overlapping rectangles (Cityscapes-like ids, background ignored) and
    embeddings scattered around one center per instance."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((B, H, W), -1, dtype=torch.int64)
    for b in range(B):
        for k in range(clusters):
            h = int(torch.randint(H // 16, H // 3, (1,), generator=g))
            w = int(torch.randint(W // 16, W // 4, (1,), generator=g))
            y = int(torch.randint(0, H - h, (1,), generator=g))
            x = int(torch.randint(0, W - w, (1,), generator=g))
            ids[b, y : y + h, x : x + w] = 26000 + 1000 * (k % 8) + k
    centers = torch.randn(B, 27000 + 8000, D, generator=g)  # indexed by id - 26000 + 1000
    emb = centers[torch.arange(B)[:, None, None], (ids.clamp(min=25000) - 25000)]
    emb = emb.permute(0, 3, 1, 2) + 0.5 * torch.randn(B, D, H, W, generator=g)
    return emb.contiguous().to(device), ids.to(device)


def shuffle_pixels(embedding, ids, seed=1):
    """The same pixels in a random order per image: a pixel's embedding vector moves with its
    id, so every cluster keeps its members and the losses are unchanged, but neighbouring pixels
    no longer share an id."""
    B, D, H, W = embedding.shape
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(H * W, generator=g) for _ in range(B)])
    perm = perm.to(embedding.device)
    flat = embedding.reshape(B, D, H * W)
    shuffled = torch.gather(flat, 2, perm[:, None, :].expand(B, D, H * W))
    shuffled_ids = torch.gather(ids.reshape(B, H * W), 1, perm)
    return shuffled.reshape(B, D, H, W).contiguous(), shuffled_ids.reshape(B, H, W).contiguous()


def memory_floor_bytes(embedding, ids):
    """The least memory traffic of forward + backward, in bytes. With E the embedding's bytes
    (B*D*H*W * element size) and I the ids' bytes (B*H*W * element size): the forward reads the
    embedding twice (cluster sums, then the hinge terms around the means) and the ids once, the
    backward reads the embedding and the ids once and writes the gradient (E bytes):

        floor = 2E + I + (E + I + E) = 4E + 2I
    """
    emb_bytes = embedding.numel() * embedding.element_size()
    id_bytes = ids.numel() * ids.element_size()
    return 4 * emb_bytes + 2 * id_bytes


def vectorized_losses(embedding, ids, delta_v, delta_d, delta_r, ignore_index):
    """(b): per-image [L_var, L_dist, L_reg] with torch.unique + index_add, no Python loops."""
    B, D, H, W = embedding.shape
    dev = embedding.device
    x = embedding.permute(0, 2, 3, 1).reshape(-1, D)
    flat = ids.reshape(-1)
    image = torch.arange(B, device=dev).repeat_interleave(H * W)
    valid = flat != ignore_index
    x, flat, image = x[valid], flat[valid], image[valid]
    span = flat.max() - flat.min() + 1
    keys, inverse = torch.unique(image * span + (flat - flat.min()), return_inverse=True)
    cluster_image = keys // span
    K = keys.numel()

    def per_cluster(v):
        return torch.zeros((K, *v.shape[1:]), device=dev, dtype=v.dtype).index_add_(0, inverse, v)

    def per_image(v):
        return torch.zeros(B, device=dev, dtype=v.dtype).index_add_(0, cluster_image, v)

    count = per_cluster(torch.ones_like(flat, dtype=x.dtype))
    means = per_cluster(x) / count[:, None]
    dist = torch.linalg.vector_norm(x - means[inverse], dim=1)
    var = per_cluster(torch.relu(dist - delta_v) ** 2) / count
    C = per_image(torch.ones(K, device=dev, dtype=x.dtype))
    same = (cluster_image[:, None] == cluster_image[None, :]) & ~torch.eye(
        K, dtype=torch.bool, device=dev
    )
    push = torch.where(same, torch.relu(2 * delta_d - torch.cdist(means, means)) ** 2, 0.0)
    reg = torch.relu(torch.linalg.vector_norm(means, dim=1) - delta_r) ** 2 / count
    return torch.stack(
        [
            per_image(var) / C.clamp(min=1),
            per_image(push.sum(1)) / (C * (C - 1)).clamp(min=1),
            per_image(reg) / C.clamp(min=1),
        ],
        dim=1,
    )


def loop_losses(embedding, ids, delta_v, delta_d, delta_r, ignore_index):
    """(c): the per-cluster Python loop found in most public implementations."""
    B, D = embedding.shape[:2]
    rows = []
    for b in range(B):
        x = embedding[b].reshape(D, -1)
        lab = ids[b].reshape(-1)
        present = torch.unique(lab)
        present = present[present != ignore_index]
        means, l_var, l_reg = [], 0.0, 0.0
        for u in present:
            mask = lab == u
            xc = x[:, mask]
            mu = xc.mean(dim=1)
            dist = torch.linalg.vector_norm(xc - mu[:, None], dim=0)
            l_var = l_var + (torch.relu(dist - delta_v) ** 2).mean()
            l_reg = l_reg + torch.relu(torch.linalg.vector_norm(mu) - delta_r) ** 2 / mask.sum()
            means.append(mu)
        C = len(means)
        l_dist = 0.0
        for a in range(C):
            for o in range(C):
                if a != o:
                    gap = torch.linalg.vector_norm(means[a] - means[o])
                    l_dist = l_dist + torch.relu(2 * delta_d - gap) ** 2
        zero = embedding.sum() * 0
        rows.append(
            torch.stack(
                [
                    zero + l_var / max(C, 1),
                    zero + l_dist / max(C * (C - 1), 1),
                    zero + l_reg / max(C, 1),
                ]
            )
        )
    return torch.stack(rows)


def op_losses(embedding, ids, delta_v, delta_d, delta_r, ignore_index, check_inputs=True):
    """(a): the fused op; check_inputs=False is how training calls it on CUDA (no NaN/Inf
    check, so no host synchronization)."""
    return discriminative_loss(
        embedding,
        ids,
        delta_v=delta_v,
        delta_d=delta_d,
        delta_r=delta_r,
        ignore_index=ignore_index,
        reduction="none",
        check_inputs=check_inputs,
    )


IMPLS = {
    "op": op_losses,
    "op, check_inputs=False": functools.partial(op_losses, check_inputs=False),
    "vectorized torch": vectorized_losses,
    "per-cluster loop": loop_losses,
}


def reduce_mean(losses):
    """Eq. (5) weighted, mean over images (every benchmark image has clusters)."""
    return (losses * losses.new_tensor(WEIGHTS)).sum(1).mean()


def forward_backward(impl, embedding, ids):
    leaf = embedding.detach().requires_grad_(True)
    losses = impl(leaf, ids, **MARGINS)
    reduce_mean(losses).backward()
    return losses.detach(), leaf.grad


def check(embedding, ids):
    ref_losses, ref_grad = forward_backward(vectorized_losses, embedding, ids)
    for name in ("op", "op, check_inputs=False", "per-cluster loop"):
        losses, grad = forward_backward(IMPLS[name], embedding, ids)
        torch.testing.assert_close(losses, ref_losses, rtol=1e-4, atol=1e-6, msg=name)
        peak = float(ref_grad.abs().max())
        torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-4 * peak, msg=name)


def time_forward_backward(impl, embedding, ids, device, runs, warmup):
    times = time_call(
        lambda: forward_backward(impl, embedding, ids),
        device,
        warmup=min(warmup, runs),
        runs=runs,
    )
    return summarize(times)


def time_interleaved(impl, inputs, device, runs, warmup):
    """Seconds per forward + backward of impl on each (embedding, ids) of inputs, their timed
    calls alternating, so that a change of the machine's speed affects each alike."""
    times = [[] for _ in inputs]
    for embedding, ids in inputs:
        time_call(
            lambda e=embedding, i=ids: forward_backward(impl, e, i), device, warmup=warmup, runs=1
        )
    for _ in range(runs):
        for (embedding, ids), t in zip(inputs, times, strict=True):
            t += time_call(
                lambda e=embedding, i=ids: forward_backward(impl, e, i), device, warmup=0, runs=1
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per case (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--loop-runs", type=int, default=5, help="timed runs of the slow loop")
    parser.add_argument(
        "--bandwidth-gbs",
        type=float,
        default=None,
        help=f"memory bandwidth (GB/s) of the floor_ms column; default {H200_BANDWIDTH_GBS:g} "
        "(an H200) on CUDA, none on the CPU (floor_bytes only)",
    )
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    bandwidth_gbs = args.bandwidth_gbs
    if bandwidth_gbs is None and device.type == "cuda":
        bandwidth_gbs = H200_BANDWIDTH_GBS

    rows = []
    targets = []
    for B, D, H, W, clusters in SIZES:
        embedding, ids = make_batch(B, D, H, W, clusters, device)
        check(embedding, ids)
        size = f"{B}x{D}x{H}x{W}, {clusters} clusters"
        floor = memory_floor_bytes(embedding, ids)
        medians = {}
        case_rows = []
        for name, impl in IMPLS.items():
            runs = args.loop_runs if name == "per-cluster loop" else args.runs
            stats = time_forward_backward(impl, embedding, ids, device, runs, args.warmup)
            medians[name] = stats["median_ms"]
            row = {"size": size, "ids": "coherent", "impl": name, **stats}
            if name.startswith("op"):
                row["back_to_back_ms"] = 1e3 * time_back_to_back(
                    lambda impl=impl, e=embedding, i=ids: forward_backward(impl, e, i),
                    device,
                    runs=runs,
                )
            case_rows.append(row)
        for row in case_rows:
            row["speedup_vs_vectorized"] = medians["vectorized torch"] / row["median_ms"]
            row["op_speedup"] = row["median_ms"] / medians["op"]
        op_row = case_rows[0]
        traffic = B * D * H * W * embedding.element_size() * 4 + B * H * W * (8 + 4 * 4)
        op_row["approx_bytes"] = traffic
        op_row["floor_bytes"] = floor
        if bandwidth_gbs:
            op_row["floor_ms"] = floor / (bandwidth_gbs * 1e9) * 1e3
        target = CUDA_TARGETS_MS.get((B, D, H, W, clusters)) if device.type == "cuda" else None
        if target is not None:
            op_row["target_ms"] = target
            op_row["met"] = op_row["median_ms"] <= target
            op_row["target"] = f"<= {target:g} ms"
            targets.append(
                {
                    "case": f"op fwd+bwd {size}",
                    "median_ms": op_row["median_ms"],
                    "target_ms": target,
                    "met": op_row["met"],
                }
            )
        rows += case_rows

        if (B, D, H, W, clusters) in SHUFFLED_SIZES:
            # The same pixels in a random order: the same losses, no spatial coherence of ids.
            emb_s, ids_s = shuffle_pixels(embedding, ids)
            check(emb_s, ids_s)
            torch.testing.assert_close(
                forward_backward(op_losses, emb_s, ids_s)[0],
                forward_backward(op_losses, embedding, ids)[0],
                rtol=1e-4,
                atol=1e-6,
                msg="shuffled pixels changed the losses",
            )
            # Timed alternating with the coherent op; the ratio is of these two medians.
            coherent_times, shuffled_times = time_interleaved(
                op_losses, [(embedding, ids), (emb_s, ids_s)], device, args.runs, args.warmup
            )
            stats = summarize(shuffled_times)
            coherent_ms = summarize(coherent_times)["median_ms"]
            ratio = stats["median_ms"] / coherent_ms
            row = {"size": size, "ids": "shuffled", "impl": "op", **stats}
            row["coherent_interleaved_median_ms"] = coherent_ms
            row["shuffled_over_coherent"] = ratio
            row["floor_bytes"] = floor
            if bandwidth_gbs:
                row["floor_ms"] = op_row["floor_ms"]
            if device.type == "cpu":
                row["target_ratio"] = CPU_SHUFFLED_TARGET_RATIO
                row["met"] = ratio <= CPU_SHUFFLED_TARGET_RATIO
                row["target"] = f"shuffled/coherent <= {CPU_SHUFFLED_TARGET_RATIO:g}"
                targets.append(
                    {
                        "case": f"op fwd+bwd {size}, shuffled / coherent ids",
                        "ratio": ratio,
                        "target_ratio": CPU_SHUFFLED_TARGET_RATIO,
                        "met": row["met"],
                    }
                )
            rows.append(row)

    print(f"\ndiscriminative_loss forward+backward on {device} (median of runs, ms)")
    floor_header = f"floor ms @{bandwidth_gbs:g} GB/s" if bandwidth_gbs else "floor ms"
    table = print_table(
        rows,
        [
            ("size", "size"),
            ("ids", "ids"),
            ("impl", "implementation"),
            ("median_ms", "median ms"),
            ("p25_ms", "p25"),
            ("p75_ms", "p75"),
            ("runs", "runs"),
            ("back_to_back_ms", "back to back ms"),
            ("op_speedup", "op is x faster"),
            ("shuffled_over_coherent", "shuffled / coherent"),
            ("floor_ms", floor_header),
            ("target", "target"),
            ("met", "met"),
        ],
    )
    if targets:
        met = sum(t["met"] for t in targets)
        print(f"\ntargets met: {met} of {len(targets)}")
    write_results(
        "discriminative_loss",
        device,
        {
            "margins": MARGINS,
            "weights": WEIGHTS,
            "bandwidth_gbs": bandwidth_gbs,
            "targets": targets,
            "rows": rows,
            "table": table,
        },
        args.out,
    )
    if any(math.isnan(r["median_ms"]) for r in rows):
        raise SystemExit("a timing is NaN")


if __name__ == "__main__":
    main()
