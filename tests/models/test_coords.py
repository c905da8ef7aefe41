"""coordinate_channels against hand-computed values, crops and its validation (also alone, as
check_crops)."""

import pytest
import torch

from panonet.models.coords import check_crops, coordinate_channels
from tests.models.helpers import assert_close_to_scale


def test_full_image_values_by_hand():
    c = coordinate_channels(1, 3, 5)
    assert c.shape == (1, 2, 3, 5) and c.dtype == torch.float32
    # x = 2 j / (5 - 1) - 1, y = 2 i / (3 - 1) - 1; channel 0 is x, channel 1 is y.
    xs = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    ys = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.equal(c[0, 0], xs.expand(3, 5))
    assert torch.equal(c[0, 1], ys[:, None].expand(3, 5))
    # Corners exactly (-1, -1), (1, -1), (-1, 1), (1, 1) as (x, y).
    assert c[0, :, 0, 0].tolist() == [-1.0, -1.0]
    assert c[0, :, 0, -1].tolist() == [1.0, -1.0]
    assert c[0, :, -1, 0].tolist() == [-1.0, 1.0]
    assert c[0, :, -1, -1].tolist() == [1.0, 1.0]


def test_crop_offsets_by_hand():
    # Full image 4 x 7; crops of 2 x 3 at (y0, x0) = (0, 0), (2, 4), (1, 2).
    offset = torch.tensor([[0, 0], [2, 4], [1, 2]])
    c = coordinate_channels(3, 2, 3, offset=offset, full_size=(4, 7))
    assert c.shape == (3, 2, 2, 3)
    for b, (y0, x0) in enumerate(offset.tolist()):
        for i in range(2):
            for j in range(3):
                x = 2 * (x0 + j) / (7 - 1) - 1
                y = 2 * (y0 + i) / (4 - 1) - 1
                assert c[b, 0, i, j].item() == pytest.approx(x, abs=1e-7)
                assert c[b, 1, i, j].item() == pytest.approx(y, abs=1e-7)
    # The crop touching the bottom-right corner ends at exactly (1, 1).
    assert c[1, :, -1, -1].tolist() == [1.0, 1.0]


def test_crop_equals_slice_of_full_map():
    full = coordinate_channels(1, 37, 53)
    offset = torch.tensor([[5, 11], [0, 0], [37 - 20, 53 - 30]])
    crops = coordinate_channels(3, 20, 30, offset=offset, full_size=(37, 53))
    for b, (y0, x0) in enumerate(offset.tolist()):
        torch.testing.assert_close(
            crops[b], full[0, :, y0 : y0 + 20, x0 : x0 + 30], rtol=0, atol=1e-6
        )


def test_single_pixel_dimension_is_zero():
    c = coordinate_channels(2, 1, 1)
    assert torch.equal(c, torch.zeros(2, 2, 1, 1))
    c = coordinate_channels(1, 1, 4)
    assert torch.equal(c[0, 1], torch.zeros(1, 4))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype):
    c = coordinate_channels(1, 9, 2049, dtype=dtype)
    assert c.dtype == dtype
    assert c[0, 0, 0, 0].item() == -1.0 and c[0, 0, 0, -1].item() == 1.0


def test_batch_without_offset_repeats():
    c = coordinate_channels(4, 6, 8)
    assert c.shape == (4, 2, 6, 8)
    assert torch.equal(c[3], c[0])


@pytest.mark.parametrize(
    ("offset", "match"),
    [
        (torch.tensor([[0, 5]]), r"crop 0 at \(y0, x0\)=\(0, 5\).*0 <= x0 <= 4"),
        (torch.tensor([[3, 0]]), r"crop 0 at \(y0, x0\)=\(3, 0\).*0 <= y0 <= 2"),
        (torch.tensor([[-1, 0]]), r"does not fit"),
        (torch.tensor([[0.0, 0.0]]), r"integer"),
        (torch.tensor([0, 0]), r"shape \(1, 2\)"),
    ],
)
@pytest.mark.parametrize("check", [coordinate_channels, check_crops])
def test_bad_offsets(offset, match, check):
    with pytest.raises(ValueError, match=match):
        check(1, 4, 6, offset=offset, full_size=(6, 10))


def test_bad_sizes():
    with pytest.raises(ValueError, match=r"does not fit in a full image of size 4x6"):
        coordinate_channels(1, 5, 6, full_size=(4, 6))
    with pytest.raises(ValueError, match=r"height, width >= 1"):
        coordinate_channels(1, 0, 6)
    with pytest.raises(ValueError, match=r"floating-point dtype"):
        coordinate_channels(1, 4, 6, dtype=torch.int64)


def test_per_image_full_size_equals_one_call_per_image():
    # After per-image random scaling every item of a batch has its own full image size.
    offset = torch.tensor([[0, 0], [3, 10], [1, 4], [0, 0]])
    full = torch.tensor([[8, 16], [12, 40], [5, 9], [4, 5]])
    c = coordinate_channels(4, 4, 5, offset=offset, full_size=full)
    assert c.shape == (4, 2, 4, 5) and c.dtype == torch.float32
    for b in range(4):
        one = coordinate_channels(
            1, 4, 5, offset=offset[b : b + 1], full_size=tuple(full[b].tolist())
        )
        torch.testing.assert_close(c[b], one[0], rtol=0, atol=1e-6)
    # By hand for image 1: x = 2 (10 + j) / 39 - 1, y = 2 (3 + i) / 11 - 1.
    assert c[1, 0, 0, 0].item() == pytest.approx(2 * 10 / 39 - 1, abs=1e-7)
    assert c[1, 1, 3, 0].item() == pytest.approx(2 * 6 / 11 - 1, abs=1e-7)
    # Image 3 is uncropped (offset 0, full size = crop size): exact corners -1 and +1.
    assert c[3, :, 0, 0].tolist() == [-1.0, -1.0] and c[3, :, -1, -1].tolist() == [1.0, 1.0]


def test_per_image_full_size_without_offset_and_one_pixel_extent():
    full = torch.tensor([[1, 7], [3, 9]])
    c = coordinate_channels(2, 1, 7, full_size=full, dtype=torch.float64)
    assert c.dtype == torch.float64
    assert torch.equal(c[0, 1], torch.zeros(1, 7, dtype=torch.float64))  # H_full = 1 -> y = 0
    assert c[0, 0, 0].tolist() == pytest.approx([2 * j / 6 - 1 for j in range(7)], abs=1e-12)
    assert c[1, 0, 0].tolist() == pytest.approx([2 * j / 8 - 1 for j in range(7)], abs=1e-12)
    # A (2,) tensor is one size for the whole batch, like the tuple.
    assert torch.equal(
        coordinate_channels(2, 3, 4, full_size=torch.tensor([5, 6])),
        coordinate_channels(2, 3, 4, full_size=(5, 6)),
    )


@pytest.mark.parametrize("check", [coordinate_channels, check_crops])
def test_per_image_full_size_errors_name_the_image(check):
    offset = torch.tensor([[0, 0], [2, 3]])
    with pytest.raises(ValueError, match=r"crop 1 at \(y0, x0\)=\(2, 3\).*size 5x8 \(needs"):
        check(2, 4, 6, offset=offset, full_size=torch.tensor([[9, 9], [5, 8]]))
    with pytest.raises(ValueError, match=r"does not fit in full image 1 of size 3x6"):
        check(2, 4, 6, full_size=torch.tensor([[4, 6], [3, 6]]))
    with pytest.raises(ValueError, match=r"\(2, 2\) integer tensor, got shape \(3, 2\)"):
        check(2, 4, 6, full_size=torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"integer tensor.*torch\.float32"):
        check(2, 4, 6, full_size=torch.full((2, 2), 8.0))
    check(2, 4, 6, offset=offset, full_size=torch.tensor([[9, 9], [6, 9]]))  # fits: no error


def test_panonet_accepts_per_image_full_size():
    from panonet.models import PanoNet

    torch.manual_seed(0)
    model = PanoNet(num_classes=3, embedding_dim=4, share_weights=True).eval()
    images = torch.randn(2, 3, 32, 48)
    offset = torch.tensor([[0, 0], [8, 20]])
    full = torch.tensor([[32, 48], [64, 96]])
    with torch.no_grad():
        both = model(images, offset=offset, full_size=full)
        first = model(images[:1], offset=offset[:1], full_size=(32, 48))
        second = model(images[1:], offset=offset[1:], full_size=(64, 96))
        # No offset: each image is the top-left crop of its own full image.
        no_offset = model(images[1:], full_size=full[1:])
        top_left = model(
            images[1:], offset=torch.zeros(1, 2, dtype=torch.int64), full_size=full[1:]
        )
    # A batch of 2 and a batch of 1 may take different convolution kernels (their sums in
    # another order): ~1e-6 of the output scale measured (float32, ~20 layers deep; outputs of
    # scale 20-80, so an absolute 1e-5 failed on an AVX-512 Xeon); 1e-5 of the scale holds with
    # margin, while a wrong coordinate map moves outputs by a large part of it.
    for t in range(3):
        assert_close_to_scale(both.embedding[t][:1], first.embedding[t], 1e-5, "first image")
        assert_close_to_scale(both.embedding[t][1:], second.embedding[t], 1e-5, "second image")
        torch.testing.assert_close(no_offset.embedding[t], top_left.embedding[t], rtol=0, atol=0)
