"""What a resumable run saves and protects: the global RNG states as checkpointable values, and
Ctrl-C held off while state changes that must not be split are made."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "hold_sigint", "set_rng_state"]


def get_rng_state(cuda_device: torch.device | None = None) -> dict[str, Any]:
    """Global RNG states as tensors and plain values that ``torch.load(weights_only=True)``
    accepts: torch CPU, numpy, python, and the CUDA generator of ``cuda_device`` (None: no
    CUDA state; only the training device's, so that a DDP process does not touch, and create
    a context on, every GPU of the node)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    cuda = None
    if cuda_device is not None and cuda_device.type == "cuda":
        cuda = torch.cuda.get_rng_state(cuda_device)
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }


def set_rng_state(state: Mapping[str, Any], cuda_device: torch.device | None = None) -> None:
    """Restore what :func:`get_rng_state` returned; its CUDA state goes to ``cuda_device``
    (skipped when None or when the state has none)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, torch.Tensor) and cuda_device is not None and cuda_device.type == "cuda":
        torch.cuda.set_rng_state(cuda, cuda_device)
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))


@contextlib.contextmanager
def hold_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends (then raise KeyboardInterrupt): state updates that
    must not be split (optimizer step + schedule + step count; the stage switch)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # installed from C; cannot be restored from Python
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
