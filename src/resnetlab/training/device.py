"""Where a run computes and in which number format: the device, autocast dtype and memory layout.

`precision=auto` picks a reduced format only where the hardware runs it natively: bf16 on GPUs with bf16
units (compute capability 8.0 and up) and on CPUs with AMX or AVX-512 BF16; fp16 with a gradient scaler on
older GPUs; fp32 elsewhere (on a CPU without bf16 units, bf16 is emulated and several times slower than
fp32). The choice and its reason are printed once at the start of a run.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import torch

from ..errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but this machine has no CUDA GPU; use device=cpu or auto")
    return device


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matrix units, where bf16 autocast is about 2.5x faster than fp32."""
    probes = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(p is not None and p() for p in probes)


def cpu_description() -> str:
    """The CPU as a figure should name it: model, family, the widest vector/matrix units, cores in use.

    'AMD EPYC' alone has named a Zen 3 with AVX2 only and a Zen 5 with AVX-512 BF16, whose speeds and whose
    `precision=auto` differ, so the family and the units are part of the name."""
    info: dict[str, str] = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = set(info.get("flags", "").split())
    units = next(
        (
            label
            for flag, label in (
                ("amx_bf16", "AMX"),
                ("avx512_bf16", "AVX-512 BF16"),
                ("avx512f", "AVX-512"),
                ("avx2", "AVX2 only"),
            )
            if flag in flags
        ),  # fmt: skip
        None,
    )
    family = f"family {info['cpu family']} model {info.get('model', '?')}" if "cpu family" in info else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    details = ", ".join(d for d in (family, units, f"{cores} cores") if d)
    return f"{name} ({details})"


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Ampere (8.0) and later have bf16 tensor cores; earlier GPUs emulate bf16 (torch may still allow it)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # autocast dtype; None: fp32
    channels_last: bool
    reason: str  # one line: what was chosen and why

    @property
    def name(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).split(".")[-1]

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
        return self.dtype is torch.float16


def choose_precision(precision: str, channels_last: str, device: torch.device) -> Precision:
    """The autocast dtype and memory layout for `device`, resolving "auto" by what the hardware runs natively."""
    why = "as set"
    if precision == "auto":
        if device.type == "cuda":
            native = cuda_has_native_bf16(device)
            precision = "bf16" if native else "fp16"
            why = "auto: this GPU has bf16 units" if native else "auto: this GPU has no native bf16; fp16 + scaler"
        elif device.type == "cpu" and cpu_has_fast_bf16():
            precision, why = "bf16", "auto: this CPU has bf16 units (AMX or AVX-512 BF16)"
        else:
            precision = "fp32"
            slow = "this CPU has no bf16 units (bf16 would be emulated, and slow)"
            why = f"auto: {slow if device.type == 'cpu' else device.type}"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    if channels_last == "auto":
        # NHWC is what cuDNN's tensor cores and oneDNN's CPU convolutions run natively. Measured on a 2-core AMD
        # EPYC (AVX2, fp32) training step: ResNet-20 at 32 px 436 vs 392 img/s, ResNet-14 at 28 px 1-channel about
        # 780 vs 670, torchvision's ResNet-18 265 vs 251 (benchmarks/train_speed.py measures both layouts).
        use_cl = device.type in ("cuda", "cpu")
    else:
        use_cl = channels_last == "true"
    return Precision(dtype, use_cl, why)


def resolve_precision(precision: str, channels_last: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, channels_last)."""
    chosen = choose_precision(precision, channels_last, device)
    return chosen.dtype, chosen.channels_last


def autocast(device: torch.device, dtype: torch.dtype | None, cache: bool = True) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (None: fp32, no autocast); `cache=False` re-casts weights at each use (CUDA graphs)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)
