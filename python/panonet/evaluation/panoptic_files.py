"""Panoptic quality on files: the COCO-panoptic JSON + PNG format that cityscapesscripts reads
and writes (:func:`write_panoptic_predictions`, :func:`evaluate_panoptic`), on the matching of
:mod:`panonet.evaluation.panoptic`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from panonet._atomic import write_atomic
from panonet.data.labels import (
    CLASSES,
    IGNORE_INDEX,
    LABEL_DIVISOR,
)
from panonet.evaluation.inputs import LabelMap, as_long_tensor, compact_ids
from panonet.evaluation.panoptic import (
    class_scores,
    count_matches,
    group_means,
    train_ids_of,
)

__all__ = [
    "evaluate_panoptic",
    "id_to_rgb",
    "panoptic_categories",
    "rgb_to_id",
    "write_panoptic_predictions",
]


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO-panoptic PNG: ``R + 256 G + 256**2 B``.

    Args:
        rgb: (H, W, 3) (or more channels; the rest are ignored, as the official ``rgb2id`` does)
            integer array.

    Returns:
        (H, W) int64.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"rgb_to_id: expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    c = rgb[..., :3].astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_id`: (H, W) integer ids in [0, 2**24) to (H, W, 3) uint8."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError("id_to_rgb: ids must lie in [0, 2**24) to fit in an RGB pixel")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _read_ids(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        rgb = np.asarray(image)
    if rgb.ndim != 3:
        raise ValueError(f"evaluate_panoptic: {path} is not an RGB panoptic PNG (mode != RGB)")
    return torch.from_numpy(rgb_to_id(rgb))


def _lookup(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each key in the sorted ``table_keys`` and whether it is there."""
    pos = np.searchsorted(table_keys, keys)
    pos = np.clip(pos, 0, max(len(table_keys) - 1, 0))
    found = (table_keys[pos] == keys) if len(table_keys) else np.zeros(len(keys), bool)
    return pos, found


def evaluate_panoptic(
    gt_json_file: str | os.PathLike,
    gt_folder: str | os.PathLike,
    pred_json_file: str | os.PathLike,
    pred_folder: str | os.PathLike,
) -> dict[str, Any]:
    """Panoptic quality of COCO-panoptic prediction files against ground-truth files.

    The equivalent of cityscapesscripts' ``evaluatePanoptic`` (same rules, same result layout)
    without printing, writing files or worker processes: segments and their classes come from
    the JSON ``segments_info`` (``category_id``, ``iscrowd``), pixels from the RGB PNGs. The
    categories, their order and thing/stuff flags are those of the ground-truth JSON (labelIds
    for ``createPanopticImgs``' default output, trainIds with its ``useTrainId``). Every
    ground-truth image needs a prediction with the same ``image_id``; extra predictions are
    ignored. Per image the work is the same two bincounts as :class:`PanopticStats` and the
    matching is the same code.

    Conventions of the official script kept: id 0 is void in both maps; a ground-truth id in
    the PNG but not in the JSON is neither void nor a segment; a ground-truth segment's area is
    its JSON ``area`` (the PNG count if absent). One generalisation: if the JSON lists several
    crowd regions of one category in an image (``createPanopticImgs`` never does), an unmatched
    prediction is forgiven by its pixels on all of them, not on the last one only.

    Args:
        gt_json_file: ground-truth JSON (e.g. ``cityscapes_panoptic_val.json``).
        gt_folder: folder of the ground-truth PNGs.
        pred_json_file: prediction JSON (``annotations`` is all that is read).
        pred_folder: folder of the predicted PNGs.

    Returns:
        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq": float, "n": int}, "per_class":
        {category id: {"pq", "sq", "rq": float, "name": str, "tp", "fp", "fn": int}}}``, scores
        as fractions. ``per_class`` has every category of the ground-truth JSON in its order;
        absent classes score 0.0 and a group with n = 0 has NaN scores (the official script
        divides by zero there).

    Raises:
        ValueError: a ground-truth image without prediction, image sizes differ, or a prediction
            whose PNG and JSON disagree (an id in one and not the other, an unknown category),
            as the official script raises on those.
    """
    fn = "evaluate_panoptic"
    gt_json = json.loads(Path(gt_json_file).read_text())
    pred_json = json.loads(Path(pred_json_file).read_text())
    categories = list(gt_json["categories"])
    cat_ids = np.array([int(c["id"]) for c in categories], dtype=np.int64)
    cat_order = np.argsort(cat_ids, kind="stable")
    cat_sorted = cat_ids[cat_order]
    is_thing = np.array([c.get("isthing", 0) == 1 for c in categories], dtype=bool)
    n_cat = len(categories)
    tp = np.zeros(n_cat, np.int64)
    fp = np.zeros(n_cat, np.int64)
    fn_ = np.zeros(n_cat, np.int64)
    iou = np.zeros(n_cat, np.float64)
    preds = {a["image_id"]: a for a in pred_json["annotations"]}

    def category_index(cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, found = _lookup(cat, cat_sorted)
        return cat_order[pos] if len(cat_order) else pos, found

    for gt_ann in gt_json["annotations"]:
        image_id = gt_ann["image_id"]
        if image_id not in preds:
            raise ValueError(f"{fn}: no prediction for the image with id {image_id!r}")
        pred_ann = preds[image_id]
        gt = _read_ids(Path(gt_folder) / gt_ann["file_name"]).reshape(-1)
        pred_map = _read_ids(Path(pred_folder) / pred_ann["file_name"])
        pred = pred_map.reshape(-1)
        if pred.numel() != gt.numel():
            raise ValueError(f"{fn}: image {image_id!r}: prediction and ground truth sizes differ")

        p_ids_t, joint = compact_ids(pred, int(pred.max()) if pred.numel() else 0)
        kp = p_ids_t.numel()
        g_ids_t, g_row = compact_ids(gt, int(gt.max()) if gt.numel() else 0, scale=kp)
        kg = g_ids_t.numel()
        joint += g_row
        inter = torch.bincount(joint, minlength=kg * kp).view(kg, kp).cpu().numpy()
        p_ids, g_ids = p_ids_t.numpy(), g_ids_t.numpy()
        p_area = inter.sum(axis=0)

        # Predicted segments: the PNG's non-zero ids, each listed once in the JSON with a known
        # category (the official script raises KeyError otherwise).
        p_seg_info = pred_ann["segments_info"]
        js_ids = np.array([int(el["id"]) for el in p_seg_info], dtype=np.int64)
        js_cat = np.array([int(el["category_id"]) for el in p_seg_info], dtype=np.int64)
        order = np.argsort(js_ids, kind="stable")
        js_ids, js_cat = js_ids[order], js_cat[order]
        p_seg = p_ids != 0
        pos, listed = _lookup(p_ids[p_seg], js_ids)
        if not listed.all():
            raise ValueError(
                f"{fn}: image {image_id!r}: segment ids {p_ids[p_seg][~listed][:8].tolist()} are "
                "in the PNG and not in the JSON"
            )
        in_png = np.zeros(len(js_ids), bool)
        in_png[pos] = True
        if not in_png.all() or len(np.unique(js_ids)) != len(js_ids):
            raise ValueError(
                f"{fn}: image {image_id!r}: segment ids {js_ids[~in_png][:8].tolist()} are in "
                "the JSON and not in the PNG (or listed twice)"
            )
        p_cls, known = category_index(js_cat[pos])
        if not known.all():
            raise ValueError(
                f"{fn}: image {image_id!r}: unknown category ids {js_cat[pos][~known].tolist()}"
            )

        # Ground-truth segments: those of the JSON (of a known category); rows of the
        # intersection table by id, zero for a listed segment absent from the PNG.
        g_info = list(gt_ann["segments_info"])
        gs_ids = np.array([int(el["id"]) for el in g_info], dtype=np.int64)
        gs_cat = np.array([int(el["category_id"]) for el in g_info], dtype=np.int64)
        gs_crowd = np.array([el.get("iscrowd", 0) == 1 for el in g_info], dtype=bool)
        g_cls, g_known = category_index(gs_cat)
        row, in_map = _lookup(gs_ids, g_ids)
        g_inter = np.where(in_map[:, None], inter[row], 0)
        png_area = g_inter.sum(axis=1)
        gs_area = np.array(
            [int(el["area"]) if "area" in el else -1 for el in g_info], dtype=np.int64
        )
        gs_area = np.where(gs_area >= 0, gs_area, png_area)
        void_row, has_void = _lookup(np.zeros(1, np.int64), g_ids)
        p_void = inter[void_row[0]] if has_void[0] else np.zeros(kp, np.int64)

        keep = g_known & (gs_ids != 0)
        counts = count_matches(
            g_inter[keep][:, p_seg],
            g_cls[keep],
            gs_crowd[keep],
            gs_area[keep],
            p_cls,
            p_area[p_seg],
            p_void[p_seg],
            n_cat,
        )
        for total, add in zip((tp, fp, fn_, iou), counts, strict=True):
            total += add

    pq, sq, rq, present = class_scores(tp, fp, fn_, iou)
    result: dict[str, Any] = group_means(pq, sq, rq, present, is_thing)
    result["per_class"] = {
        int(c["id"]): {
            "pq": float(pq[i]),
            "sq": float(sq[i]),
            "rq": float(rq[i]),
            "name": c.get("name", str(c["id"])),
            "tp": int(tp[i]),
            "fp": int(fp[i]),
            "fn": int(fn_[i]),
        }
        for i, c in enumerate(categories)
    }
    return result


def panoptic_categories() -> list[dict[str, Any]]:
    """The 19 evaluated Cityscapes categories in the JSON form of ``createPanopticImgs``
    (``id`` = labelId, ``name``, ``color``, ``isthing``), in trainId order."""
    return [
        {"id": c.label_id, "name": c.name, "color": list(c.color), "isthing": int(c.is_thing)}
        for c in CLASSES
    ]


def write_panoptic_predictions(
    out_json: str | os.PathLike,
    out_folder: str | os.PathLike,
    items: Iterable[tuple[str, LabelMap]],
) -> Path:
    """Writes predicted panoptic maps in the COCO-panoptic format that
    :func:`evaluate_panoptic` and cityscapesscripts' ``evaluatePanoptic`` read.

    Per image a PNG ``<out_folder>/<image_id>.png`` with the segment ids as RGB, and one JSON
    for all images: ``{"annotations": [{"image_id", "file_name", "segments_info": [{"id",
    "category_id", "area", "iscrowd": 0}, ...]}, ...], "categories": ...}``. The segment ids are
    the Cityscapes ids themselves (``labelId * 1000 + j`` for things, ``labelId`` for stuff) and
    the category of a segment is its labelId, as in the ground truth ``createPanopticImgs``
    makes. Maps are written as they come (``items`` may be a generator); the JSON is written
    last, atomically.

    Args:
        out_json: path of the JSON file.
        out_folder: folder of the PNGs (created if needed).
        items: ``(image_id, panoptic)`` pairs; ``image_id`` the Cityscapes image id
            (``<city>_<seq>_<frame>``, the key that matches the ground truth), ``panoptic`` an
            (H, W) integer map (tensor or array) of Cityscapes ids, 0 = void.

    Returns:
        The JSON path.

    Raises:
        ValueError: a duplicate or path-like image id, a map that is not 2-D, negative ids, or
            an id of a class that is not evaluated.
    """
    fn = "write_panoptic_predictions"
    out_json = Path(out_json)
    folder = Path(out_folder)
    folder.mkdir(parents=True, exist_ok=True)
    annotations: list[dict[str, Any]] = []
    seen: set[str] = set()
    for image_id, panoptic in items:
        image_id = str(image_id)
        if image_id in seen:
            raise ValueError(f"{fn}: image id {image_id!r} given twice")
        if not image_id or "/" in image_id or os.sep in image_id or image_id.startswith("."):
            raise ValueError(f"{fn}: image id {image_id!r} cannot be a file name")
        seen.add(image_id)
        pan = as_long_tensor(panoptic, fn, "panoptic", torch.device("cpu"))
        if pan.dim() != 2:
            raise ValueError(f"{fn}: expected an (H, W) panoptic map, got {tuple(pan.shape)}")
        flat = pan.reshape(-1)
        lo, hi = (int(v) for v in torch.aminmax(flat)) if flat.numel() else (0, 0)
        if lo < 0:
            raise ValueError(f"{fn}: image {image_id!r}: panoptic ids must be >= 0, got {lo}")
        ids_t, idx = compact_ids(flat, hi)
        area = torch.bincount(idx, minlength=ids_t.numel()).numpy()
        ids = ids_t.numpy()
        seg = ids != 0
        cls = train_ids_of(ids[seg])
        if (cls == IGNORE_INDEX).any():
            raise ValueError(
                f"{fn}: image {image_id!r}: ids of classes that are not evaluated: "
                f"{ids[seg][cls == IGNORE_INDEX][:8].tolist()} (use 0 for void)"
            )
        label = np.where(ids >= LABEL_DIVISOR, ids // LABEL_DIVISOR, ids)
        file_name = f"{image_id}.png"
        Image.fromarray(id_to_rgb(pan.numpy())).save(folder / file_name)
        annotations.append(
            {
                "image_id": image_id,
                "file_name": file_name,
                "segments_info": [
                    {"id": int(i), "category_id": int(c), "area": int(a), "iscrowd": 0}
                    for i, c, a in zip(ids[seg], label[seg], area[seg], strict=True)
                ],
            }
        )
    data = {"annotations": annotations, "categories": panoptic_categories()}
    text = json.dumps(data)
    return write_atomic(out_json, lambda tmp: Path(tmp).write_text(text))
