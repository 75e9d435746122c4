"""A checkpoint's contents checked before they are used: one line ``<file>: <what>`` instead of a traceback.

:func:`diffmd.engine.common.load_torch` already refuses anything that is not plain data
(``weights_only=True``). What it loads can still be wrong: parameters the model refuses (a negative
``dt_fs``), a ``state_dict`` of another size than the parameters declare (an EGNN's weights under other
``hidden``), a model's own state that is inconsistent (sGDML indices out of range), or parameters that
would make the constructor allocate a 160 GB tensor before anything is compared. :func:`build_checked`:

1. the keys and their types (``model`` a registered name, ``params`` a mapping, ``state_dict`` tensors);
2. the parameters against the model's signature and declared choices (:func:`diffmd.registry.check_params`);
3. the model built under an allocation guard: no single tensor, and not all of them together, may be larger
   than what the checkpoint's own tensors could need (so sizes are checked against the declared parameters
   *before* allocation: a forged ``hidden: 1000000`` stops at the first ``torch.empty``);
4. every tensor of the built model against the file's: no key missing or extra, the same shape, finite
   values; then ``load_state_dict`` (whose own errors, e.g. a model's extra state refusing itself, are
   reported on one line too).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from diffmd.registry import TrajectoryModel, build_model, check_params, get_model_class

#: one factory call may request at most this many times the checkpoint's tensor bytes (or the floor below)
_SINGLE_FACTOR, _SINGLE_FLOOR = 4, 64 * 2**20
#: all factory calls of a build together (e3nn models build ~100 MB of temporaries for ~1 MB of weights)
_TOTAL_FACTOR, _TOTAL_FLOOR = 16, 1 * 2**30
_FACTORIES = {"empty", "zeros", "ones", "full", "rand", "randn", "randint", "empty_strided", "eye", "new_empty",
              "new_zeros", "new_ones", "new_full"}


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _shape_of(name: str, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """The shape a factory call asks for (None when it cannot be read from the arguments)."""
    if name.startswith("new_"):
        args = args[1:]  # the tensor the method is called on
    if "size" in kwargs:
        size = kwargs["size"]
    elif name == "eye":
        n = args[0] if args else kwargs.get("n")
        m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m", n)
        size = (n, m)
    elif name == "randint":
        size = next((a for a in args if isinstance(a, (tuple, list, torch.Size))), None)
    elif args and isinstance(args[0], (tuple, list, torch.Size)):
        size = args[0]
    else:
        size = tuple(a for a in args if isinstance(a, int) and not isinstance(a, bool)) if name != "full" else None
    try:
        return tuple(int(n) for n in size) if size is not None else None
    except (TypeError, ValueError):
        return None


class AllocationGuard(TorchFunctionMode):
    """Refuses tensor factory calls (``torch.empty``, ``zeros``, ``randn``, ...) larger than ``single`` bytes, or
    adding up to more than ``total`` bytes, before they allocate; the message names ``where``."""

    def __init__(self, single: int, total: int, where: str, holds: int) -> None:
        super().__init__()
        self.single, self.total, self.where, self.holds, self.used = single, total, where, holds, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch API
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _FACTORIES:
            shape = _shape_of(name, args, kwargs)
            if shape is not None:
                dtype = kwargs.get("dtype") or (args[0].dtype if name.startswith("new_") and args
                                                and isinstance(args[0], torch.Tensor) else torch.get_default_dtype())
                nbytes = math.prod(max(n, 0) for n in shape) * dtype.itemsize
                self.used += nbytes
                if nbytes > self.single or self.used > self.total:
                    what = (f"a tensor of shape {shape} ({_human(nbytes)})" if nbytes > self.single
                            else f"{_human(self.used)} of tensors in all")
                    raise ValueError(f"{self.where}: its params would allocate {what}, but the checkpoint holds"
                                     f" {_human(self.holds)} of tensors: corrupt or forged params")
        return func(*args, **kwargs)


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def check_keys(ckpt: dict[str, Any], where: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(model name, params, state_dict)`` of a ``model.pt``, each of the right type."""
    for key in ("model", "params", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{where}: missing key {key!r}")
    name, params, state = ckpt["model"], ckpt["params"], ckpt["state_dict"]
    if not isinstance(name, str):
        raise ValueError(f"{where}: 'model' must be a model name, got {type(name).__name__}")
    try:
        get_model_class(name)
    except KeyError as exc:
        raise ValueError(f"{where}: {exc.args[0]}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{where}: 'params' must be a mapping, got {type(params).__name__}")
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{where}: 'state_dict' must map names to tensors")
    return name, params, state


def check_state_dict(model: torch.nn.Module, state: dict[str, Any], where: str) -> None:
    """Every tensor of ``model`` present in ``state`` with its shape and finite values, nothing extra."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else [])
        parts += [f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}"] if extra else []
        raise ValueError(f"{where}: state_dict does not fit the model its params declare ({'; '.join(parts)})")
    for key, want in expected.items():
        got = state[key]
        if not isinstance(want, torch.Tensor):
            continue  # a module's extra state: its own set_extra_state checks it
        if not isinstance(got, torch.Tensor):
            raise ValueError(f"{where}: state_dict[{key!r}] is a {type(got).__name__}, expected a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(f"{where}: state_dict[{key!r}] has shape {tuple(got.shape)}, the params declare"
                             f" {tuple(want.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ValueError(f"{where}: state_dict[{key!r}] holds NaN or inf")


def build_checked(ckpt: dict[str, Any], where: str | os.PathLike,
                  device: torch.device | str = "cpu") -> TrajectoryModel:
    """The model of a loaded ``model.pt`` after every check of the module docstring; ``ValueError`` naming ``where``."""
    where = str(where)
    name, params, state = check_keys(ckpt, where)
    stride = params.get("stride", 1)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"{where}: params: stride must be an integer >= 1, got {stride!r}")
    check_params(name, {k: v for k, v in params.items() if k != "stride"}, f"{where}: params")
    holds = _tensor_bytes(state)
    guard = AllocationGuard(max(_SINGLE_FACTOR * holds, _SINGLE_FLOOR), max(_TOTAL_FACTOR * holds, _TOTAL_FLOOR),
                            where, holds)
    try:
        with guard:
            model = build_model(name, params, source=f"{where}: params")
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        first = str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__
        raise ValueError(first if first.startswith(where) else f"{where}: params: {first}") from None
    check_state_dict(model, state, where)
    try:
        model.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{where}: state_dict: {first}") from None
    return model.to(device)
