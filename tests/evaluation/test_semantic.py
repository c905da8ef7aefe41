"""Confusion matrix, IoU and pixel accuracy: properties, a direct NumPy count, and
cityscapesscripts' evalPixelLevelSemanticLabeling on the same images."""

import copy
import math

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_pixel
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from panonet.data.labels import IGNORE_INDEX, LABEL_TO_TRAIN, NUM_CLASSES, TRAIN_TO_LABEL
from panonet.evaluation import confusion_matrix, iou_from_confusion, pixel_accuracy

C = 5  # few classes in the property tests, so that absent classes and collisions happen


def label_pairs(max_side: int = 12):
    """(pred, target) int64 arrays of one shape; targets include the ignore index."""
    shape = st.tuples(st.integers(1, max_side), st.integers(1, max_side))
    return shape.flatmap(
        lambda s: st.tuples(
            arrays(np.int64, s, elements=st.integers(0, C - 1)),
            arrays(np.int64, s, elements=st.sampled_from([*range(C), IGNORE_INDEX])),
        )
    )


def numpy_confusion(pred: np.ndarray, target: np.ndarray, c: int) -> np.ndarray:
    """Independent count: one np.add.at over the evaluated pixels."""
    keep = target != IGNORE_INDEX
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (target[keep], pred[keep]), 1)
    return cm


@given(label_pairs(), label_pairs())
def test_sum_of_matrices_is_matrix_of_concatenation(a, b):
    (pa, ta), (pb, tb) = a, b
    joint = confusion_matrix(
        np.concatenate([pa.ravel(), pb.ravel()]), np.concatenate([ta.ravel(), tb.ravel()]), C
    )
    summed = confusion_matrix(pa, ta, C) + confusion_matrix(torch.from_numpy(pb), tb, C)
    assert torch.equal(joint, summed)
    assert joint.dtype == torch.int64 and joint.shape == (C, C)


@given(label_pairs())
def test_matches_numpy_count(pair):
    pred, target = pair
    cm = confusion_matrix(pred, target, C)
    assert np.array_equal(cm.numpy(), numpy_confusion(pred, target, C))
    assert int(cm.sum()) == int((target != IGNORE_INDEX).sum())


@given(label_pairs())
def test_perfect_prediction(pair):
    _, target = pair
    pred = np.where(target == IGNORE_INDEX, 0, target)  # any prediction on ignored pixels
    per_class, miou = iou_from_confusion(confusion_matrix(pred, target, C))
    present = np.isin(np.arange(C), target)
    assert per_class.dtype == torch.float64
    assert torch.all(per_class[present] == 1.0)
    assert torch.all(torch.isnan(per_class[~present]))
    assert miou == 1.0 if present.any() else math.isnan(miou)
    if present.any():
        assert pixel_accuracy(confusion_matrix(pred, target, C)) == 1.0


@given(label_pairs(), st.permutations(range(C)), st.randoms(use_true_random=False))
def test_permutations(pair, perm, rnd):
    pred, target = pair
    cm = confusion_matrix(pred, target, C)
    # Shuffling pixels (the same way in both maps) changes nothing.
    order = list(range(pred.size))
    rnd.shuffle(order)
    shuffled = confusion_matrix(pred.ravel()[order], target.ravel()[order], C)
    assert torch.equal(cm, shuffled)
    # Renaming classes permutes rows and columns, and the per-class IoUs with them.
    lut = np.array(perm)
    lut_t = np.full(IGNORE_INDEX + 1, IGNORE_INDEX)  # the ignore index stays put
    lut_t[:C] = lut
    relabelled = confusion_matrix(lut[pred], lut_t[target], C)
    assert torch.equal(relabelled[lut][:, lut], cm)
    iou, miou = iou_from_confusion(cm)
    iou_r, miou_r = iou_from_confusion(relabelled)
    assert torch.allclose(iou_r[lut], iou, rtol=0, atol=0, equal_nan=True)
    assert miou == pytest.approx(miou_r, abs=1e-15, nan_ok=True)


def test_iou_values_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 7, 1]])  # 7 on an ignored pixel: skipped
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    per_class, miou = iou_from_confusion(cm)
    assert per_class[:3].tolist() == [1 / 3, 2 / 3, 1 / 2]
    assert math.isnan(per_class[3])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3, abs=1e-15)
    assert pixel_accuracy(cm) == 4 / 6
    assert math.isnan(pixel_accuracy(torch.zeros(4, 4, dtype=torch.int64)))


def test_targets_outside_range_skipped_and_invalid_predictions_rejected():
    target = np.array([0, 1, -1, 9, 255])
    assert confusion_matrix(np.array([0, 1, 5, 5, 5]), target, 2).tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 255, 0, 0, 0]), target, 2)
    with pytest.raises(TypeError):
        confusion_matrix(np.zeros(3, dtype=np.float32), np.zeros(3, dtype=np.int64), 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3, dtype=np.int64), np.zeros(4, dtype=np.int64), 2)


def test_miou_equals_cityscapes_pixel_evaluation(tmp_path):
    """Per-class IoU over the 19 classes equals evalPixelLevelSemanticLabeling's, computed by
    its own evaluatePair + getIouScoreForLabel on labelIds PNGs of the same images."""
    rng = np.random.default_rng(0)
    args = copy.copy(cs_pixel.args)
    args.evalInstLevelScore = False
    args.quiet = True
    cs_cm = cs_pixel.generateMatrix(args)
    ours = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    for i in range(3):
        # Ground truth over all labelIds 0..33 (void and non-evaluated classes included);
        # predictions over the 19 evaluated ones, correlated with the ground truth.
        gt_label = rng.integers(0, 34, size=(40, 56)).astype(np.uint8)
        pred_train = np.where(
            rng.random(gt_label.shape) < 0.6,
            LABEL_TO_TRAIN[gt_label],
            rng.integers(0, NUM_CLASSES, gt_label.shape),
        )
        pred_train = np.where(pred_train == IGNORE_INDEX, 3, pred_train)
        gt_file, pred_file = tmp_path / f"gt{i}.png", tmp_path / f"pred{i}.png"
        Image.fromarray(gt_label).save(gt_file)
        Image.fromarray(TRAIN_TO_LABEL[pred_train].astype(np.uint8)).save(pred_file)
        cs_pixel.evaluatePair(str(pred_file), str(gt_file), cs_cm, {}, {}, args)
        ours += confusion_matrix(pred_train, LABEL_TO_TRAIN[gt_label])
    per_class, miou = iou_from_confusion(ours)
    expected = [cs_pixel.getIouScoreForLabel(int(lid), cs_cm, args) for lid in TRAIN_TO_LABEL]
    assert per_class.tolist() == pytest.approx(expected, abs=1e-12)
    assert miou == pytest.approx(float(np.nanmean(expected)), abs=1e-12)


def test_device_tensors(device):
    rng = np.random.default_rng(5)
    target = rng.integers(0, NUM_CLASSES + 1, size=(2, 16, 16))
    target[target == NUM_CLASSES] = IGNORE_INDEX
    pred = rng.integers(0, NUM_CLASSES, size=(2, 16, 16))
    cm = confusion_matrix(torch.from_numpy(pred).to(device), target)  # numpy follows the tensor
    assert cm.device.type == torch.device(device).type
    assert np.array_equal(cm.cpu().numpy(), numpy_confusion(pred, target, NUM_CLASSES))
