"""panonet.inference.bandwidth_table: per-class bandwidths for cluster_instances."""

import json
import math

import numpy as np
import pytest
import torch

from panonet.data.labels import STUFF_TRAIN_IDS, THING_TRAIN_IDS
from panonet.inference import bandwidth_table


def expected(**overrides):
    table = torch.zeros(19)
    table[list(THING_TRAIN_IDS)] = 0.5
    for c, v in overrides.items():
        table[int(c.lstrip("c"))] = v
    return table


def test_default_things_only():
    table = bandwidth_table()
    assert table.dtype == torch.float32 and table.shape == (19,)
    assert torch.equal(table, expected())
    assert (table[list(STUFF_TRAIN_IDS)] == 0).all()
    assert torch.equal(bandwidth_table(default=0.7)[11:], torch.full((8,), 0.7))


def test_mapping_keys_int_digits_and_names():
    table = bandwidth_table({13: 0.6, "11": 0.3, "Bicycle": 0.9, " truck ": 0.4})
    assert torch.allclose(table, expected(c13=0.6, c11=0.3, c18=0.9, c14=0.4))


def test_sequence_and_tensor_full_tables():
    values = [0.0] * 11 + [0.1 * (i + 1) for i in range(8)]
    values[3] = -1.0  # stuff may be marked with any value <= 0; stored as 0
    table = bandwidth_table(values)
    assert table[3] == 0 and torch.allclose(table[11:], torch.tensor(values[11:]))
    assert torch.equal(bandwidth_table(torch.tensor(values, dtype=torch.float64)), table)
    assert torch.equal(bandwidth_table(np.array(values, dtype=np.float32).tolist()), table)


def test_custom_class_set():
    table = bandwidth_table({2: 1.5}, num_classes=3, thing_train_ids=[1, 2], default=0.25)
    assert table.tolist() == [0.0, 0.25, 1.5]


@pytest.mark.parametrize(
    "spec, match",
    [
        ([0.5] * 18, "expected 19 bandwidths"),
        (torch.zeros(2, 19), "1-D"),
        ({"cat": 0.5}, "unknown class 'cat'"),
        ({19: 0.5}, "unknown class id 19"),
        ({-1: 0.5}, "unknown class id -1"),
        ({"car": 0.0}, r"thing class 13 \(car\) needs a finite bandwidth > 0"),
        ({"car": -0.5}, "needs a finite bandwidth > 0"),
        ({"car": math.nan}, "needs a finite bandwidth > 0, got nan"),
        ({"car": math.inf}, "needs a finite bandwidth > 0"),
        ({"road": 0.5}, r"stuff class 0 \(road\)"),
        ({"sky": 0.0}, "stuff classes are never clustered"),
        ({"car": 0.5, 13: 0.6}, "given twice"),
        ([0.0] * 11 + [0.5] * 7 + [0.0], r"thing class 18 \(bicycle\)"),
        ([0.5] * 19, r"stuff class 0 \(road\) must have bandwidth <= 0"),
        ([math.nan] + [0.0] * 10 + [0.5] * 8, "stuff class 0"),
    ],
)
def test_invalid_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        bandwidth_table(spec)


def test_type_errors_and_bad_arguments():
    with pytest.raises(TypeError, match="expected a number"):
        bandwidth_table({"car": "wide"})
    with pytest.raises(TypeError, match="expected a number"):
        bandwidth_table({"car": True})
    with pytest.raises(TypeError, match="got float"):
        bandwidth_table(0.5)
    with pytest.raises(ValueError, match="default must be finite and > 0"):
        bandwidth_table(default=0.0)
    with pytest.raises(ValueError, match=r"thing_train_ids must lie in \[0, 19\)"):
        bandwidth_table(thing_train_ids=[19])


@pytest.mark.parametrize("nested", [False, True])
def test_json_file(tmp_path, nested):
    spec = {"car": 0.6, "11": 0.3}
    path = tmp_path / "bw.json"
    path.write_text(json.dumps({"bandwidths": spec, "delta_v": 0.25} if nested else spec))
    want = expected(c13=0.6, c11=0.3)
    assert torch.allclose(bandwidth_table(path), want)
    assert torch.allclose(bandwidth_table(str(path)), want)


def test_json_list(tmp_path):
    path = tmp_path / "bw.json"
    path.write_text(json.dumps([0] * 11 + [0.4] * 8))
    assert torch.allclose(bandwidth_table(path), expected() * 0.8)


def test_json_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match="cannot read bandwidth file .*missing.json"):
        bandwidth_table(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{car: 0.5")
    with pytest.raises(ValueError, match="invalid JSON in bandwidth file .*bad.json"):
        bandwidth_table(bad)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("0.5")
    with pytest.raises(ValueError, match="scalar.json must hold a mapping"):
        bandwidth_table(scalar)
    stuff = tmp_path / "stuff.json"
    stuff.write_text(json.dumps({"bandwidths": {"road": 0.5}}))
    with pytest.raises(ValueError, match=r"stuff class 0 \(road\).*in bandwidth file .*stuff.json"):
        bandwidth_table(stuff)
