"""panonet.inference.vote without reading values back: the bounded vote equals the checked one,
and merge(vote_groups=..., check_inputs=False) makes no host synchronization."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from panonet.inference import bandwidth_table, merge
from panonet.inference.vote import THING_VOTE_GROUPS, vote_instance_classes, vote_tables
from panonet.sync_points import SyncPoints


@hsettings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(0, 12), extra=st.integers(0, 5))
def test_bounded_vote_equals_the_checked_one(seed, K, extra):
    rng = np.random.default_rng(seed)
    sem = torch.tensor(rng.choice([0, 11, 12, 13, 14, 255], size=(2, 7, 9)))
    inst = torch.tensor(rng.integers(0, K + 1, size=(2, 7, 9)))
    voters = torch.zeros(19, dtype=torch.bool)
    voters[[11, 12, 13, 14]] = True
    checked = vote_instance_classes(sem, inst, voters)
    bounded = vote_instance_classes(sem, inst, voters, max_instance_id=K + extra)
    assert torch.equal(bounded, checked)


def test_vote_tables_on_the_device_of_the_table():
    bw = bandwidth_table()
    bw[11], bw[12] = 0.3, 0.7  # person, rider: the lower middle of (0.3, 0.7)
    tables = vote_tables(bw, THING_VOTE_GROUPS)
    assert tables.bandwidth[11] == pytest.approx(0.3) and tables.bandwidth[12] == 0
    assert tables.anchor_of[12] == 11 and bool(tables.voters[12]) and not bool(tables.voters[0])
    with SyncPoints() as points:  # cached: nothing uploaded the second time
        vote_tables(bw, THING_VOTE_GROUPS)
    assert points.total == 0


@pytest.mark.filterwarnings("ignore:the embedding looks untrained")
def test_merge_with_vote_groups_reads_nothing_back_and_matches():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(1, 19, 16, 24, generator=gen)
    emb = torch.randn(1, 12, 16, 24, generator=gen) * 2
    bw = bandwidth_table()
    kwargs = dict(size=(64, 96), vote_groups=THING_VOTE_GROUPS, max_instances_per_class=50)
    checked = merge(logits, emb, bw, **kwargs)
    vote_tables(bw, THING_VOTE_GROUPS)  # the group tables are uploaded once per device
    with SyncPoints(where=True) as points:
        free = merge(logits, emb, bw, check_inputs=False, **kwargs)
    assert points.total == 0, dict(points.places)
    for key in ("semantic", "instance", "panoptic"):
        assert torch.equal(free[key], checked[key])
