"""Where a run would wait for the GPU, counted on any device.

The host waits for the GPU (a host synchronization) whenever it needs a value the GPU computes:
a scalar read (``.item()``, ``int(t)``, ``bool(t)``), an output whose size depends on values
(``nonzero``, indexing with a boolean mask, ``unique``, ``masked_select``, ``bincount``,
``repeat_interleave`` without ``output_size``), or a blocking copy between host and device.
``torch.cuda.set_sync_debug_mode`` finds them on a GPU; :class:`SyncPoints` counts the
operations that imply them on the CPU as well, so that a change to the pipeline can be judged on
a machine without a GPU. It sees the ATen operations, so it counts each such operation once
wherever it comes from; what happens inside panonet's own ops is added from their code (see
``PANONET_OP_SYNCS``). Copies are counted by the operation that makes a tensor from host data
(``torch.tensor``, ``torch.as_tensor`` of a list, ``torch.from_numpy``), which a blocking
upload follows when the target is a GPU; downloads (``.cpu()``, ``.to("cpu")``) are not seen on
a CPU run.
"""

import traceback
import warnings
from collections import Counter
from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["PANONET_OP_SYNCS", "SyncPoints", "cuda_syncs"]

_aten = torch.ops.aten

# Operations whose output size depends on the values they read.
_SIZE_FROM_VALUES = {
    _aten.nonzero.default: "nonzero",
    _aten.masked_select.default: "masked_select",
    _aten._unique2.default: "unique",
    _aten.unique_dim.default: "unique",
    _aten.unique_consecutive.default: "unique",
    _aten.unique_dim_consecutive.default: "unique",
    _aten.bincount.default: "bincount",
}

_MASK_INDEXING = {
    _aten.index.Tensor,
    _aten.index_put.default,
    _aten.index_put_.default,
    _aten._index_put_impl_.default,
}

# Host synchronizations inside panonet's ops on CUDA, read from their C++ code (csrc/ops/cuda):
# a function of the op's arguments, for the ops that have any.
PANONET_OP_SYNCS = {
    # The finite-values check of the points, and the number of centers.
    "panonet::mean_shift": lambda args: 2,
    # With check_inputs: finite embedding, bandwidth table (when on the GPU), class ids covered.
    # (The table on the GPU, as a GPU pipeline holds it.)
    "panonet::cluster_instances": lambda args: 3 if (args[5] if len(args) > 5 else True) else 0,
    # With check_inputs: the finite-values check of the embedding.
    "panonet::discriminative_loss": lambda args: int(args[6] if len(args) > 6 else True),
}


# Reads of values into Python, seen as tensor methods: under torch.inference_mode the ATen
# operation beneath them (_local_scalar_dense) does not reach a dispatch mode.
_SCALAR_READS = {
    torch.Tensor.item,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__bool__,
    torch.Tensor.__index__,
    torch.Tensor.tolist,
}


class _ScalarReads(TorchFunctionMode):
    def __init__(self, owner: "SyncPoints") -> None:
        super().__init__()
        self.owner = owner
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        outer = self.depth == 0  # tolist calls item, int calls __index__...: count the outer one
        if outer and func in _SCALAR_READS:
            self.owner.add("scalar read", 1)
        self.depth += 1
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.depth -= 1


class SyncPoints(TorchDispatchMode):
    """Context manager counting the host synchronizations the enclosed code would make on a GPU.

    Example::

        with SyncPoints() as points:
            predictor.predict(frame)
        print(points.total, dict(points.counts))

    Args:
        where: also record, per kind, the innermost panonet source line that led to it
            (``places``), to find what to remove.

    Attributes:
        counts: ``Counter`` of {kind: occurrences}; kinds: ``scalar read``, the names of the
            value-sized operations, ``boolean mask``, ``tensor from host data``, ``panonet::<op>``.
        places: ``Counter`` of {(kind, "file:line function"): occurrences}, with ``where``.
    """

    def __init__(self, *, where: bool = False) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.places: Counter[tuple[str, str]] = Counter()
        self._where = where
        self._reads = _ScalarReads(self)

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] += n
        if self._where:
            here = "?"
            for frame in reversed(traceback.extract_stack()[:-2]):
                if "/panonet/" in frame.filename and not frame.filename.endswith("sync_points.py"):
                    here = f"{frame.filename.split('/panonet/')[-1]}:{frame.lineno} {frame.name}"
                    break
            self.places[(kind, here)] += n

    def __enter__(self) -> "SyncPoints":
        self._reads.__enter__()
        try:
            return super().__enter__()
        except BaseException:
            self._reads.__exit__(None, None, None)
            raise

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._reads.__exit__(*exc)

    @property
    def total(self) -> int:
        """All host synchronizations counted so far."""
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self._kind(func, args, kwargs)
        if kind is not None:
            self.add(*kind)
        return func(*args, **kwargs)

    @staticmethod
    def _kind(func, args, kwargs) -> tuple[str, int] | None:
        if func in _SIZE_FROM_VALUES:
            return _SIZE_FROM_VALUES[func], 1
        if func is _aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            return "repeat_interleave", 1
        if func in _MASK_INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                for i in indices
            ):
                return "boolean mask", 1
            return None
        if func is _aten.lift_fresh.default and args[0].dim() > 0:
            # (0-dim: a Python number set into a tensor, filled on the device without a copy.)
            return "tensor from host data", 1
        name = func._schema.name
        if name in PANONET_OP_SYNCS:
            n = PANONET_OP_SYNCS[name](args)
            return (name, n) if n else None
        return None


def cuda_syncs(fn: Callable[[], object]) -> list[str]:
    """The host synchronizations that torch's CUDA sync debugging reports while ``fn()`` runs
    (a GPU is needed; unlike :class:`SyncPoints` it also sees inside replayed CUDA graphs and
    compiled code). Returns their warning messages; the device is synchronized first, so
    earlier work does not count."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message)]
