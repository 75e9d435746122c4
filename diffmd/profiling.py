"""What a call costs a GPU: dispatched aten ops, host synchronisations and matmul FLOPs, counted on any device.

A GPU running this project's small graphs is launch-bound: each dispatched op costs the host a few µs
whatever its size, and every host read of a device value (``.item()``, ``int()``, ``bool()``, ``nonzero``,
a boolean-mask index, ``.cpu()`` / ``.numpy()`` / ``.tolist()``) stalls the host until the device has
drained its queue, breaking the overlap of launches and kernels and any graph capture. :class:`OpCounter`
counts both for a block of code, on the CPU as on CUDA (the counts do not depend on the device), so a
test or a benchmark on this project's CPU-only machines sees what a GPU would pay:

* ``ops``: every aten op that reaches the backends (a ``TorchDispatchMode``: after autograd and the
  composite decompositions, so ``linear`` counts as ``t`` + ``addmm``, and a backward pass run inside the
  block is counted too);
* ``kernels``: the ops that launch device work: ``ops`` minus views and metadata-only ops (``view``,
  ``expand``, ``slice``, ``detach``, ...) and bare allocations (``empty``, ``empty_strided``, ...);
* ``syncs``: host reads of device data. Flagged ops: ``_local_scalar_dense`` (``.item()``, ``int()``,
  ``float()``, ``bool()`` of a tensor), ``nonzero``, ``masked_select``, ``unique``, ``repeat_interleave``
  without ``output_size``, an ``index`` / ``index_put`` with a boolean mask; and calls of
  ``Tensor.cpu``/``numpy``/``tolist`` (patched for the block: a no-op on a CPU tensor, a device-to-host
  copy on CUDA). :attr:`OpCounter.sync_sites` names them (op and the caller's file:line);
* ``flops``: ``torch.utils.flop_counter``'s formulas (matmuls, convolutions, attention), counted as its
  ``FlopCounterMode`` counts them, by this one dispatch mode (half the cost per op of stacking the two).

Used by the tests (zero syncs per training step and per fixed-step score evaluation of every
engine-trained model), ``benchmarks/launches.py`` (results/tables/launches.{csv,md}) and
``benchmarks/paper_cost.py`` (the cost model's units).
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

#: Ops that read device data on the host (each a stream synchronisation on CUDA).
SYNC_OPS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.nonzero.out,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.is_nonzero.default,
    aten.equal.default,
}
#: Ops that launch nothing: bare allocations (views are recognised by their schema).
NO_KERNEL_OPS = {
    aten.empty.memory_format,
    aten.empty_strided.default,
    aten.empty_like.default,
    aten.new_empty.default,
    aten.new_empty_strided.default,
    aten.detach.default,
    aten.lift_fresh.default,
    aten._local_scalar_dense.default,
    aten.sym_size.int,
    aten.sym_stride.int,
    aten.sym_numel.default,
    aten.sym_storage_offset.default,
    aten.is_same_size.default,
}
_HOST_READS = ("cpu", "numpy", "tolist")
_THIS_FILE = str(Path(__file__).resolve())


def _is_view(func: Any) -> bool:
    return bool(getattr(func, "is_view", False))


def _has_bool_index(args: tuple[Any, ...]) -> bool:
    """Whether an ``index``/``index_put`` call indexes with a boolean mask (a hidden ``nonzero``)."""
    indices = args[1] if len(args) > 1 else None
    if not isinstance(indices, (list, tuple)):
        return False
    return any(torch.is_tensor(t) and t.dtype == torch.bool for t in indices)


def _caller() -> str:
    """The first frame outside torch and this file: ``path:line`` (for :attr:`OpCounter.sync_sites`)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        name = frame.filename
        if name == _THIS_FILE or "/torch/" in name or name.startswith("<"):
            continue
        return f"{Path(name).name}:{frame.lineno}"
    return "?"


@dataclass
class Counts:
    """The counts of one counted block (see the module docstring)."""

    ops: int = 0
    kernels: int = 0
    syncs: int = 0
    flops: int = 0
    sync_sites: Counter = field(default_factory=Counter)
    by_op: Counter = field(default_factory=Counter)

    def scaled(self, factor: float) -> dict[str, float]:
        return {"ops": self.ops * factor, "kernels": self.kernels * factor, "syncs": self.syncs * factor,
                "flops": self.flops * factor}  # fmt: skip


class _Dispatch(TorchDispatchMode):
    def __init__(self, counts: Counts, sites: bool, host: set[int], on_op: Callable[[Any], None] | None,
                 flops: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.counts, self.sites, self.host, self.on_op = counts, sites, host, on_op
        self.flop_formulas = None
        if flops:
            from torch.utils.flop_counter import flop_registry

            self.flop_formulas = flop_registry
        self._decomposing = 0

    def _run(self, func, args, kwargs):
        """``func(*args, **kwargs)`` and its FLOPs, as ``torch.utils.flop_counter.FlopCounterMode`` counts them
        (this mode did so stacked under the counter, at ~2x the cost per op: its module tracker and pytree work):
        an op with a composite decomposition runs decomposed, its parts' FLOPs counted (not as ops: they never
        reached the counter before either); any other op runs and counts by its packet's formula."""
        if self.flop_formulas is None:
            return func(*args, **kwargs)
        if func is not torch.ops.prim.device.default:
            self._decomposing += 1
            try:
                with self:
                    r = func.decompose(*args, **kwargs)
            finally:
                self._decomposing -= 1
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        formula = self.flop_formulas.get(func._overloadpacket)
        if formula is not None:
            self.counts.flops += formula(*args, **kwargs, out_val=out)
        return out

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if self._decomposing:  # the parts of a decomposed op: FLOPs only
            return self._run(func, args, kwargs)
        c = self.counts
        c.ops += 1
        if self.on_op is not None:
            self.on_op(func)
        if func is aten._local_scalar_dense.default and args and torch.is_tensor(args[0]) \
                and args[0].data_ptr() in self.host:  # a value that lives on the host on every device
            return self._run(func, args, kwargs)  # fmt: skip
        c.by_op[str(func.overloadpacket.__name__)] += 1
        if not _is_view(func) and func not in NO_KERNEL_OPS:
            c.kernels += 1
        sync = func in SYNC_OPS
        if func.overloadpacket in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_):
            sync = sync or _has_bool_index(args)
        if func.overloadpacket is aten.repeat_interleave and func is aten.repeat_interleave.Tensor:
            sync = sync or kwargs.get("output_size") is None
        if func.overloadpacket is aten.repeat_interleave and func is aten.repeat_interleave.self_Tensor:
            sync = sync or kwargs.get("output_size") is None
        if sync:
            c.syncs += 1
            if self.sites:
                c.sync_sites[f"{func.overloadpacket.__name__} @ {_caller()}"] += 1
        return self._run(func, args, kwargs)


class OpCounter:
    """``with OpCounter() as c: ...`` then ``c.counts`` (:class:`Counts`). ``flops=False`` skips the FLOP
    formulas (and the composite decompositions they count through); ``sites=False`` skips naming where each sync
    happened."""

    def __init__(self, flops: bool = True, sites: bool = True, host: list[torch.Tensor] | None = None,
                 on_op: Callable[[Any], None] | None = None) -> None:  # fmt: skip
        """``host``: tensors that live in host memory on every device (an optimiser's step counters: Adam keeps
        them on the CPU unless capturable), whose reads are no device sync; ``on_op(func)``: called per op."""
        self.counts = Counts()
        self._flops = flops
        self._sites = sites
        self._host = {t.data_ptr() for t in host or []}
        self._on_op = on_op
        self._modes: list[Any] = []
        self._saved: dict[str, Any] = {}

    def _patch(self) -> None:
        counts, sites = self.counts, self._sites
        for name in _HOST_READS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def wrapper(t: torch.Tensor, *a: Any, _orig: Callable = original, _name: str = name, **k: Any) -> Any:
                counts.syncs += 1
                if sites:
                    counts.sync_sites[f"Tensor.{_name} @ {_caller()}"] += 1
                return _orig(t, *a, **k)

            setattr(torch.Tensor, name, wrapper)

    def __enter__(self) -> OpCounter:
        self._patch()
        if self._flops:  # FlopCounterMode's module hooks, kept: the counts stay those of the counter stacked before
            # (with global module hooks, e3nn's compiled modules dispatch one more view per call: no kernel)
            from torch.utils.module_tracker import ModuleTracker

            self._tracker = ModuleTracker()
            self._tracker.__enter__()
        self._mode = _Dispatch(self.counts, self._sites, self._host, self._on_op, flops=self._flops)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        if self._flops:
            self._tracker.__exit__()
        self.counts.flops = int(self.counts.flops)
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved.clear()


def count(fn: Callable[[], Any], flops: bool = True, sites: bool = True) -> Counts:
    """The :class:`Counts` of one call of ``fn()``."""
    with OpCounter(flops=flops, sites=sites) as c:
        fn()
    return c.counts
