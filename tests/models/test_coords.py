"""coordinate_channels against hand-computed values, crops and its validation."""

import pytest
import torch

from panonet.models.coords import coordinate_channels


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
def test_bad_offsets(offset, match):
    with pytest.raises(ValueError, match=match):
        coordinate_channels(1, 4, 6, offset=offset, full_size=(6, 10))


def test_bad_sizes():
    with pytest.raises(ValueError, match=r"does not fit in a full image of size 4x6"):
        coordinate_channels(1, 5, 6, full_size=(4, 6))
    with pytest.raises(ValueError, match=r"height, width >= 1"):
        coordinate_channels(1, 0, 6)
    with pytest.raises(ValueError, match=r"floating-point dtype"):
        coordinate_channels(1, 4, 6, dtype=torch.int64)
