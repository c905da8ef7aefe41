"""Float64 references of PanoNet's discriminative loss, written from eqs. (2)-(4) of the paper.

Deliberately naive and independent of the kernels' structure: a loop over images and clusters,
means by ``mean``, norms by ``norm``. ``losses_numpy`` gives values; ``losses_torch`` is the same
transcription in torch, whose autograd gives reference gradients.
"""

import numpy as np
import torch


def losses_numpy(
    embedding: np.ndarray,
    instance_ids: np.ndarray,
    delta_v: float,
    delta_d: float,
    delta_r: float,
    ignore_index: int,
) -> np.ndarray:
    """(B, D, H, W) embedding, (B, H, W) ids -> (B, 3) float64 [L_var, L_dist, L_reg]."""
    emb = np.asarray(embedding, dtype=np.float64)
    ids = np.asarray(instance_ids)
    B, D = emb.shape[:2]
    out = np.zeros((B, 3))
    for b in range(B):
        x = emb[b].reshape(D, -1).T
        lab = ids[b].reshape(-1)
        clusters = [x[lab == u] for u in np.unique(lab[lab != ignore_index])]
        C = len(clusters)
        if C == 0:
            continue
        means = np.stack([c.mean(axis=0) for c in clusters])
        hinge = lambda v: np.maximum(v, 0.0)  # noqa: E731
        out[b, 0] = np.mean(
            [
                np.mean(hinge(np.linalg.norm(mu - c, axis=1) - delta_v) ** 2)
                for mu, c in zip(means, clusters, strict=True)
            ]
        )
        if C > 1:
            dist = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=2)
            pair = hinge(2 * delta_d - dist) ** 2
            np.fill_diagonal(pair, 0.0)
            out[b, 1] = pair.sum() / (C * (C - 1))
        out[b, 2] = np.mean(
            [
                hinge(np.linalg.norm(mu) - delta_r) ** 2 / len(c)
                for mu, c in zip(means, clusters, strict=True)
            ]
        )
    return out


def losses_torch(
    embedding: torch.Tensor,
    instance_ids: torch.Tensor,
    delta_v: float,
    delta_d: float,
    delta_r: float,
    ignore_index: int,
) -> torch.Tensor:
    """The same equations in float64 torch (differentiable): (B, 3)."""
    emb = embedding.to(torch.float64)
    B, D = emb.shape[:2]
    rows = []
    for b in range(B):
        x = emb[b].reshape(D, -1).T
        lab = instance_ids[b].reshape(-1)
        ids = torch.unique(lab[lab != ignore_index])
        C = len(ids)
        zero = emb.sum() * 0
        if C == 0:
            rows.append(torch.stack([zero, zero, zero]))
            continue
        clusters = [x[lab == u] for u in ids]
        means = torch.stack([c.mean(dim=0) for c in clusters])
        l_var = torch.stack(
            [
                (torch.relu(torch.linalg.vector_norm(mu - c, dim=1) - delta_v) ** 2).mean()
                for mu, c in zip(means, clusters, strict=True)
            ]
        ).mean()
        if C > 1:
            a, o = torch.nonzero(~torch.eye(C, dtype=torch.bool), as_tuple=True)
            dist = torch.linalg.vector_norm(means[a] - means[o], dim=1)
            l_dist = (torch.relu(2 * delta_d - dist) ** 2).sum() / (C * (C - 1))
        else:
            l_dist = zero
        l_reg = torch.stack(
            [
                torch.relu(torch.linalg.vector_norm(mu) - delta_r) ** 2 / len(c)
                for mu, c in zip(means, clusters, strict=True)
            ]
        ).mean()
        rows.append(torch.stack([l_var, l_dist, l_reg]))
    return torch.stack(rows) if rows else emb.new_zeros((0, 3))
