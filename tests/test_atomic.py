"""Atomic writes: the file appears complete or not at all, with ordinary permissions."""

import os
import stat
from pathlib import Path

import pytest

from panonet._atomic import write_atomic, write_json_atomic
from panonet.models import PanoNet
from panonet.models.checkpoint import save_checkpoint


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def plain_file_mode(tmp_path) -> int:
    """What open() gives a new file under the current umask."""
    reference = tmp_path / "reference"
    reference.write_text("x")
    return mode(reference)


def test_outputs_have_the_permissions_of_a_plain_open(tmp_path):
    expected = plain_file_mode(tmp_path)
    text = write_atomic(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("hello"))
    data = write_json_atomic(tmp_path / "b.json", {"x": float("nan")})
    ckpt = save_checkpoint(tmp_path / "m.pt", PanoNet(num_classes=2, embedding_dim=2))
    for path in (text, data, ckpt):
        assert mode(path) == expected, path
    assert data.read_text() == '{\n  "x": null\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "m.pt", "reference"]


def test_failed_write_leaves_nothing(tmp_path):
    def fail(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(tmp_path / "out.txt", fail)
    assert list(tmp_path.iterdir()) == []


def test_stable_tmp_takes_over_a_killed_writers_leftover(tmp_path):
    # A run killed mid-write left "x.png.tmp"; the next write of x.png reuses that name and
    # renames it away: nothing is left over (what resumable outputs rely on).
    target = tmp_path / "x.png"
    (tmp_path / "x.png.tmp").write_bytes(b"half a png")
    write_atomic(target, lambda tmp: Path(tmp).write_bytes(b"whole"), stable_tmp=True)
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
