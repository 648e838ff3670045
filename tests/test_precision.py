"""precision: which products change, where (src/vlkge/precision.py)."""

from __future__ import annotations

import pytest
import torch

from vlkge.config import load_config
from vlkge.precision import autocast, grad_scaler, set_matmul_precision
from vlkge.training.setup import configure_process

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def ieee_after():
    yield
    set_matmul_precision("fp32")


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_float32_precisions_leave_cpu_products_in_float32(precision):
    a = torch.randn(4, 8)
    with autocast(CPU, precision):
        assert (a @ a.T).dtype == torch.float32


def test_bf16_products_run_in_bf16_on_the_cpu():
    a = torch.randn(4, 8)
    with autocast(CPU, "bf16"):
        assert (a @ a.T).dtype == torch.bfloat16


def test_tf32_switches_cudas_float32_products_for_the_process():
    """Set from a run's config (forward and backward alike, so not an autocast region) and
    switched back by the next run of fp32."""
    matmul = torch.backends.cuda.matmul
    configure_process(load_config(None, ["precision=tf32"]))
    assert matmul.fp32_precision == "tf32"
    configure_process(load_config(None, ["precision=fp32"]))
    assert matmul.fp32_precision == "none"  # torch's default: IEEE float32


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_only_fp16_on_cuda_scales_the_loss(precision):
    assert not grad_scaler(CPU, precision).is_enabled()
