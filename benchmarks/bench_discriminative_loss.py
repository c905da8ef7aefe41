"""Benchmark of panonet.ops.discriminative_loss, forward + backward.

Compares (a) the fused op, (b) a vectorized pure-torch implementation (torch.unique +
index_add), (c) a per-cluster Python loop as most public repositories write it. Correctness of
(a) and (c) against (b) is checked first (values and gradients), then each is warmed up and
timed with device synchronization; the table reports medians.

    python benchmarks/bench_discriminative_loss.py [--device cpu|cuda|auto] [--runs 20]
"""

from __future__ import annotations

import argparse
import math

import torch
from _common import print_table, resolve_device, summarize, time_call, write_results

from panonet.ops import discriminative_loss

MARGINS = {"delta_v": 0.25, "delta_d": 1.0, "delta_r": 6.0, "ignore_index": -1}
WEIGHTS = (1.0, 1.0, 0.1)
# (B, D, H, W, clusters): a 1/4-scale Cityscapes batch, and one full-resolution frame.
SIZES = [(2, 12, 256, 512, 20), (1, 12, 1024, 2048, 50)]


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


def op_losses(embedding, ids, delta_v, delta_d, delta_r, ignore_index):
    """(a): the fused op."""
    return discriminative_loss(
        embedding,
        ids,
        delta_v=delta_v,
        delta_d=delta_d,
        delta_r=delta_r,
        ignore_index=ignore_index,
        reduction="none",
    )


IMPLS = {"op": op_losses, "vectorized torch": vectorized_losses, "per-cluster loop": loop_losses}


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
    for name in ("op", "per-cluster loop"):
        losses, grad = forward_backward(IMPLS[name], embedding, ids)
        torch.testing.assert_close(losses, ref_losses, rtol=1e-4, atol=1e-6, msg=name)
        peak = float(ref_grad.abs().max())
        torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-4 * peak, msg=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per case (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--loop-runs", type=int, default=5, help="timed runs of the slow loop")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args()
    device = resolve_device(args.device)

    rows = []
    for B, D, H, W, clusters in SIZES:
        embedding, ids = make_batch(B, D, H, W, clusters, device)
        check(embedding, ids)
        size = f"{B}x{D}x{H}x{W}, {clusters} clusters"
        medians = {}
        for name, impl in IMPLS.items():
            runs = args.loop_runs if name == "per-cluster loop" else args.runs
            times = time_call(
                lambda impl=impl, e=embedding, i=ids: forward_backward(impl, e, i),
                device,
                warmup=min(args.warmup, runs),
                runs=runs,
            )
            stats = summarize(times)
            medians[name] = stats["median_ms"]
            rows.append({"size": size, "impl": name, **stats})
        for row in rows[-len(IMPLS) :]:
            row["speedup_vs_vectorized"] = medians["vectorized torch"] / row["median_ms"]
            row["op_speedup"] = row["median_ms"] / medians["op"]
        traffic = B * D * H * W * embedding.element_size() * 4 + B * H * W * (8 + 4 * 4)
        rows[-len(IMPLS)]["approx_bytes"] = traffic

    print(f"\ndiscriminative_loss forward+backward on {device} (median of runs, ms)")
    table = print_table(
        rows,
        [
            ("size", "size"),
            ("impl", "implementation"),
            ("median_ms", "median ms"),
            ("p25_ms", "p25"),
            ("p75_ms", "p75"),
            ("runs", "runs"),
            ("op_speedup", "op is x faster"),
        ],
    )
    write_results(
        "discriminative_loss",
        device,
        {"margins": MARGINS, "weights": WEIGHTS, "rows": rows, "table": table},
        args.out,
    )
    if any(math.isnan(r["median_ms"]) for r in rows):
        raise SystemExit("a timing is NaN")


if __name__ == "__main__":
    main()
