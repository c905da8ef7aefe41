"""panonet.sync_points: the count of host synchronizations a GPU run would make, on the CPU."""

import numpy as np
import pytest
import torch

from panonet.sync_points import SyncPoints


@pytest.mark.parametrize("inference", [False, True])
def test_scalar_reads_are_counted_once_each(inference):
    x = torch.arange(6)
    with torch.inference_mode(inference), SyncPoints() as points:
        int(x.max())
        x.sum().item()
        bool((x > 2).any())
        float(x.float().mean())
        x.tolist()
        range(10)[x[1]]  # __index__
    assert points.counts == {"scalar read": 6}


def test_value_sized_outputs_and_masks():
    x = torch.tensor([3, 1, 3, 0])
    with SyncPoints() as points:
        torch.nonzero(x)
        torch.unique(x)
        torch.bincount(x)
        x.repeat_interleave(x)
        x.repeat_interleave(x, output_size=7)  # sized by the caller: no wait
        x[x > 0]
        x[x > 0] = 5
        x[torch.tensor([0, 1])]  # integer indices: no wait, but made from host data
        torch.where(x > 0, x, 0)  # the sync-free form
    assert points.counts == {
        "tensor from host data": 1,
        "nonzero": 1,
        "unique": 1,
        "bincount": 1,
        "repeat_interleave": 1,
        "boolean mask": 2,
    }


def test_uploads_counted_and_device_fills_not():
    with SyncPoints() as points:
        torch.from_numpy(np.zeros((2, 2)))
        torch.as_tensor([1.0, 2.0])
        y = torch.zeros(3)
        y[0] = 1.0  # a Python number: filled on the device
        torch.full((2,), 7)
    assert points.counts == {"tensor from host data": 2}


def test_panonet_ops_add_the_waits_of_their_code():
    from panonet.ops import cluster_instances

    emb, sem, bw = torch.randn(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), torch.ones(2)
    with SyncPoints(where=True) as points:
        cluster_instances(emb, sem, bw)
        cluster_instances(emb, sem, bw, check_inputs=False)
    assert points.counts == {"panonet::cluster_instances": 3}
    ((kind, place),) = points.places
    assert kind == "panonet::cluster_instances" and place.startswith("ops/cluster_instances.py:")


def test_counter_stops_counting_on_exit():
    with SyncPoints() as points:
        torch.arange(3).sum().item()
    torch.arange(3).sum().item()
    assert points.total == 1
