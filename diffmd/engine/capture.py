"""Captured hot loops: ``train.compile`` / ``rollout.compile`` and ``train.precision: tf32``.

For training, :func:`compile_loss` compiles the whole objective (``model.loss``). For sampling and rollouts,
:func:`apply_compile` compiles the modules a model names (:meth:`diffmd.registry.TrajectoryModel.compile_targets`:
its network, never the sampler's data-dependent control flow) in place with ``nn.Module.compile``, so parameter
names, checkpoints and ``load_state_dict`` are unchanged. On CUDA the mode is ``reduce-overhead``: inductor's
fused kernels replayed as CUDA graphs (one launch per captured region instead of one per op); elsewhere
inductor's default (fused C++ kernels on a CPU). The hot paths are free of host reads (docs/paper_scale.md), so
a region is one graph; shapes change only with the batch size (the last batch of an epoch) or, for bonded
graphs of mixed molecules, the edge count (automatic dynamic shapes). A compile error falls back to eager with
a warning (``torch._dynamo.config.suppress_errors``), so a run never dies of it.

``setting``: ``auto`` (on CUDA only: on a CPU, compiling costs minutes a short run does not win back), True or
False.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

LOG = logging.getLogger(__name__)
#: ``train.compile`` / ``rollout.compile`` values.
COMPILE_SETTINGS = ("auto", True, False)


def _configure() -> None:
    """A compile error runs that region eagerly (with a warning) instead of failing the job; random draws inside
    compiled code come from PyTorch's own generator (inductor's are its own stream otherwise), so a seed gives the
    same noise, dropout masks and diffusion times compiled or not."""
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.config.suppress_errors = True
    torch._inductor.config.fallback_random = True


def compile_enabled(setting: Any, device: torch.device) -> bool:
    """Whether ``setting`` (``auto``, True, False; strings ``"true"``/``"false"`` too) compiles on ``device``."""
    if isinstance(setting, str) and setting.lower() in ("true", "false"):
        setting = setting.lower() == "true"
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"compile: expected one of auto, true, false, got {setting!r}")
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return bool(setting)


def compile_mode(device: torch.device) -> str:
    """``reduce-overhead`` (CUDA graphs) on CUDA, inductor's ``default`` elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else "default"


def compile_loss(model: Any, device: torch.device, setting: Any = True) -> bool:
    """For training: compile the model's whole objective (``model.loss``: the network and the loss around it,
    forward and, through AOTAutograd, backward) when ``setting`` says so on ``device``, as an instance attribute
    shadowing the method (``del model.loss`` restores it; parameters and checkpoints are untouched). With the
    optimiser fused (the trainer's on CUDA), a captured step is a handful of launches. Returns whether it did."""
    if not compile_enabled(setting, device):
        return False
    _configure()
    model.loss = torch.compile(model.loss, mode=compile_mode(device))
    LOG.info("compiled %s.loss (mode %s)", type(model).__name__, compile_mode(device))
    return True


def apply_compile(model: Any, device: torch.device, setting: Any = True) -> list[str]:
    """Compile ``model.compile_targets()`` in place when ``setting`` says so on ``device``; returns what was
    compiled (class names), empty when nothing was."""
    if not compile_enabled(setting, device):
        return []
    _configure()
    mode = compile_mode(device)
    done = []
    for module in model.compile_targets():
        module.compile(mode=mode)
        done.append(type(module).__name__)
    LOG.info("compiled %s (mode %s)", ", ".join(done), mode)
    return done


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """TF32 matmuls and convolutions inside the block when ``precision`` is ``tf32`` and ``device`` is CUDA (a
    CPU has no TF32 units: float32, unchanged); the previous flags are restored after."""
    if precision != "tf32" or torch.device(device).type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """``x`` (float32) rounded to TF32's 10-bit mantissa (round to nearest even), as a tensor core reads it: how
    the tests emulate TF32 on a CPU (:class:`EmulatedTF32`)."""
    if x.dtype != torch.float32:
        return x
    bits = x.contiguous().view(torch.int32)
    rounded = (bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF
    out = rounded.view(torch.float32)
    return torch.where(torch.isfinite(x), out, x).view(x.shape)


class EmulatedTF32:
    """``with EmulatedTF32(): ...``: every float32 matmul-family op (mm, addmm, bmm, baddbmm, ...) reads its
    matrix operands rounded to TF32, accumulating in float32 as a tensor core does; for tests on a CPU."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        aten = torch.ops.aten
        ops = {aten.mm.default: (0, 1), aten.addmm.default: (1, 2), aten.bmm.default: (0, 1),
               aten.baddbmm.default: (1, 2), aten.mv.default: (0, 1), aten.addmv.default: (1, 2)}  # fmt: skip

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
                which = ops.get(func)
                if which is not None:
                    args = tuple(round_to_tf32(a) if i in which and torch.is_tensor(a) else a
                                 for i, a in enumerate(args))  # fmt: skip
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()

    def __enter__(self) -> EmulatedTF32:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
