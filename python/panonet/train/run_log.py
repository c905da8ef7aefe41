"""The record of a training run: metrics as JSON lines (and TensorBoard where installed), and
the messages it prints. Only the main process of a distributed run writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from panonet._atomic import write_atomic

__all__ = ["RunLog"]

# Record fields that are not curves (wall-clock times).
_NOT_PLOTTED = ("time", "elapsed")


class RunLog:
    """Metrics log and messages of one training run.

    Args:
        path: the JSON-lines file, one record per line.
        tb_dir: TensorBoard folder (used when ``torch.utils.tensorboard`` imports).
        is_main: whether this process writes (rank 0); the others log and print nothing.
    """

    def __init__(self, path: Path, tb_dir: Path, *, is_main: bool) -> None:
        self.path = Path(path)
        self.tb_dir = Path(tb_dir)
        self.is_main = is_main
        self._file = None
        self._opened = False
        self._tb = None
        self._said: set[str] = set()

    def open(self, *, resumed: bool, step: int) -> None:
        """Opens the log for appending. A fresh run (not ``resumed``) starts it empty; a run
        resumed at ``step`` drops the records of later steps (written after the checkpoint by
        a run that then crashed: the resumed run writes them again)."""
        if not self.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "a"
        if not resumed and not self._opened:
            mode = "w"
        elif resumed and self.path.exists() and not self._opened:
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if int(rec.get("step", 0)) <= step:
                    kept.append(line)
            text = "".join(line + "\n" for line in kept)
            write_atomic(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        self._file = self.path.open(mode, encoding="utf-8")
        self._opened = True
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.say_once("tb", f"TensorBoard not installed: metrics go to {self.path} only")
            else:
                self._tb = SummaryWriter(str(self.tb_dir))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def record(self, record: dict[str, Any]) -> None:
        """Appends ``record`` (and plots its float fields of "train"/"val" records)."""
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            kind = record.get("kind")
            for key, value in record.items():
                if (
                    kind in ("train", "val")
                    and isinstance(value, float)
                    and key not in _NOT_PLOTTED
                ):
                    self._tb.add_scalar(f"{kind}/{key}", value, record["step"])

    def say(self, message: str) -> None:
        """Prints ``message`` to stderr, above any progress bar (main process only)."""
        if self.is_main:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def say_once(self, key: str, message: str) -> None:
        """:meth:`say`, the first time for ``key``."""
        if key not in self._said:
            self._said.add(key)
            self.say(message)
