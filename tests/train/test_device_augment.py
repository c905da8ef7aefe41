"""Training augmentation on the device (``augment_on = "device"``): the same batches as the
loader's, without reading a value back from the device, and the Trainer's run unchanged.

Synthetic scenes of 64 x 128 with crops of 64 x 96 and scales down to 0.5 (so some scaled
images are smaller than the crop and get padded) and up to 1.5.
"""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from panonet.data import CityscapesPanoptic
from panonet.data.augment import train_transforms
from panonet.data.synthetic import generate
from panonet.data.transforms import collate
from panonet.train import TrainConfig
from panonet.train.device_augment import DeferItems, DeferredItems, augment_on_device
from panonet.train.sampling import SeededItems
from panonet.train.trainer import Trainer
from tests.conftest import requires_cuda
from tests.train.test_trainer import metrics, read_log, small_config

CROP, SCALE = (64, 96), (0.5, 1.5)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate(root, train=6, val=1, size=(64, 128), seed=0, progress=False)
    return root


def keys(n: int, epoch: int = 0) -> list[tuple[int, int]]:
    return [(i, epoch) for i in range(n)]


def loader_batch(scenes, keys_: list[tuple[int, int]]) -> dict:
    """The batch as the DataLoader's workers make it (augment_on = "loader")."""
    items = SeededItems(CityscapesPanoptic(scenes, "train"), train_transforms(CROP, scale=SCALE), 7)
    return collate([items[k] for k in keys_])


def deferred(scenes, keys_: list[tuple[int, int]]) -> tuple[DeferredItems, SeededItems]:
    """The loader's batch for augment_on = "device", and the items that augment it."""
    dataset = CityscapesPanoptic(scenes, "train", compact=True)
    items = SeededItems(dataset, train_transforms(CROP, scale=SCALE), 7, deferred=True)
    return DeferItems(19, 255)([items[k] for k in keys_]), items


def assert_batches_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert got[key].dtype == value.dtype and got[key].device == value.device, key
            assert torch.equal(got[key], value), key
        else:
            assert got[key] == value, key


def test_compact_items_hold_the_same_labels_in_smaller_dtypes(scenes):
    wide = CityscapesPanoptic(scenes, "train")[2]
    compact = CityscapesPanoptic(scenes, "train", compact=True)[2]
    assert compact["semantic"].dtype == torch.uint8 and compact["instance"].dtype == torch.int32
    for key in ("image", "semantic", "instance"):
        assert torch.equal(compact[key].long(), wide[key].long()), key
    assert (compact["instance"] == -1).any() and (compact["instance"] > 1000).any()


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_device_augmentation_on_the_cpu_is_the_loaders_batch_to_the_bit(scenes, epoch):
    """Same seeds, same host draws, the same transforms on compact labels then widened: every
    key equal (images, labels with their padding, offsets after flips, full sizes, files)."""
    k = keys(6, epoch)
    batch, items = deferred(scenes, k)
    assert batch.seeds == [items[key][1] for key in k]
    got = augment_on_device(batch, items, "cpu")
    want = loader_batch(scenes, k)
    assert_batches_equal(got, want)
    # The draws cover what the check is about: padded crops and flipped offsets occur.
    assert (want["semantic"] == 255).any()
    assert (want["full_size"][:, 1] < 128).any() and (want["full_size"][:, 1] > 128).any()


def test_device_augmentation_reads_nothing_back_from_the_device(scenes):
    """On the meta device every read of a value raises: the upload, the scale-and-crop (label
    windows picked by integer arithmetic from sizes), the flip and the jitter run to the end;
    offsets and full sizes, drawn on the host, stay there."""
    batch, items = deferred(scenes, keys(4))
    got = augment_on_device(batch, items, "meta")
    assert got["image"].device.type == "meta" and got["image"].shape == (4, 3, *CROP)
    assert got["semantic"].dtype == torch.int64 and got["instance"].dtype == torch.int64
    assert got["offset"].device.type == "cpu"
    assert torch.equal(got["full_size"], loader_batch(scenes, keys(4))["full_size"])


def test_defer_items_checks_the_class_ids_on_the_host(scenes):
    dataset = CityscapesPanoptic(scenes, "train", compact=True)
    items = SeededItems(dataset, None, 0, deferred=True)
    with pytest.raises(ValueError, match=r"expected semantic labels in \[0, 5\)"):
        DeferItems(5, 255)([items[k] for k in keys(2)])
    with pytest.raises(ValueError, match="empty batch"):
        DeferItems(19, 255)([])


def test_trainer_with_device_augmentation_logs_what_the_loader_run_logs(scenes, tmp_path):
    """Both stages, the stage switch and validation: the same losses, learning rates and
    mIoU, bit for bit, and the same weights at the end."""
    runs = {}
    for where in ("loader", "device"):
        cfg = small_config(scenes, augment_on=where, scale=SCALE)
        final = Trainer(cfg, tmp_path / where).train()
        runs[where] = (metrics(read_log(tmp_path / where / "metrics.jsonl")), torch.load(final))
    assert runs["device"][0] == runs["loader"][0]
    assert len(runs["loader"][0]) >= 4
    for key, value in runs["loader"][1]["model"].items():
        assert torch.equal(runs["device"][1]["model"][key], value), key


def test_trainer_step_with_device_augmentation_reads_nothing_back(scenes, tmp_path):
    """The Trainer's step on a deferred batch on the meta device: augmentation, forward, loss,
    backward and update without a read of a device value."""
    cfg = small_config(scenes, augment_on="device", val_images=0)
    trainer = Trainer(cfg, tmp_path / "run")
    batch = next(iter(trainer._loader()))
    assert isinstance(batch, DeferredItems)
    trainer.device = torch.device("meta")
    trainer.model.to("meta")
    trainer.loss_fn.to("meta")
    names, values, _ = trainer._queue_step(batch)
    assert values.device.type == "meta" and values.shape == (len(names),)


def test_trainer_names_bad_class_ids_with_device_augmentation(scenes, tmp_path):
    cfg = small_config(scenes, augment_on="device", num_classes=5, val_images=0)
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match=r"expected semantic labels in \[0, 5\)"):
        trainer.train()
    assert trainer.step == 0


def test_augment_on_is_checked(scenes):
    with pytest.raises(ValueError, match=r"expected augment_on in \('loader', 'device'\)"):
        TrainConfig(data_root=str(scenes), augment_on="gpu")


@requires_cuda
def test_cuda_device_augmentation_matches_the_cpu_and_arrives_pinned(scenes):
    """On a GPU, without a host synchronization: labels, offsets and sizes exactly the CPU's
    (integer indexing, host draws); image values within 1 of the CPU's (the bilinear resize and
    the jitter run on other kernels, rounded to uint8 at the end). The loader pins the deferred
    items."""
    k = keys(6)
    batch, items = deferred(scenes, k)
    loader = DataLoader(
        items,
        batch_sampler=[k],
        collate_fn=DeferItems(19, 255),
        pin_memory=True,
    )
    pinned = next(iter(loader))
    assert isinstance(pinned, DeferredItems) and pinned.seeds == batch.seeds
    assert all(item["image"].is_pinned() for item in pinned.items)
    torch.cuda.synchronize()
    # A host synchronization (a blocking copy, a value read) raises in this mode.
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = augment_on_device(pinned, items, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    want = augment_on_device(batch, items, "cpu")
    for key in ("semantic", "instance"):
        assert got[key].is_cuda and torch.equal(got[key].cpu(), want[key]), key
    for key in ("offset", "full_size"):
        assert torch.equal(got[key], want[key]), key
    difference = (got["image"].cpu().int() - want["image"].int()).abs()
    assert int(difference.max()) <= 1


@requires_cuda
def test_cuda_trainer_with_device_augmentation_follows_the_loader_run(scenes, tmp_path):
    """On a GPU, both stages: the same steps and learning rates as the loader run, and a first
    loss within 1 % of it (the images differ by at most one grey level, the labels not at all)."""
    runs = {}
    for where in ("loader", "device"):
        cfg = small_config(scenes, augment_on=where, scale=SCALE, device="cuda", val_images=0)
        Trainer(cfg, tmp_path / where).train()
        runs[where] = [
            r for r in read_log(tmp_path / where / "metrics.jsonl") if r["kind"] == "train"
        ]
    got, want = runs["device"], runs["loader"]
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2, 3, 4]
    assert [r["lr"] for r in got] == [r["lr"] for r in want]
    assert got[0]["total"] == pytest.approx(want[0]["total"], rel=1e-2)
    assert all(math.isfinite(r["total"]) for r in got)
