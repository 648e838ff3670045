"""Mixed precision (``precision: fp32 | tf32 | bf16 | fp16``) for training losses and evaluation
scores.

Matrix products run in the lower precision under ``torch.autocast`` on the model's device (CPU
included: bf16 products use AMX / AVX-512 BF16 where the CPU has them); parameters, optimiser
state, losses and ranks stay float32. fp16 on CUDA scales the loss (``torch.amp.GradScaler``)
so small gradients do not underflow. tf32 keeps every tensor float32 and lets CUDA's tensor
cores multiply (inputs rounded to a 10-bit mantissa, float32 sums), forward and backward, for
the whole process (:func:`set_matmul_precision`); CPUs are unaffected. fp32, the default,
changes nothing.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast region for ``precision`` on ``device`` (a no-op for fp32 and tf32)."""
    if precision not in DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def set_matmul_precision(precision: str) -> None:
    """CUDA's float32 matrix products in TF32 for ``precision: tf32``, in IEEE float32 (torch's
    default) otherwise."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = "tf32" if precision == "tf32" else "none"
    else:
        matmul.allow_tf32 = precision == "tf32"


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a pass-through scaler otherwise."""
    enabled = precision == "fp16" and device.type == "cuda"
    return torch.amp.GradScaler(device.type if enabled else "cpu", enabled=enabled)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters are (CPU for a model without any)."""
    first = next(model.parameters(), None)
    return torch.device("cpu") if first is None else first.device
