"""Helpers for complex vectors stored as ``[real ; imaginary]`` halves."""

from __future__ import annotations

import torch


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.chunk(2, dim=-1)


def rotate(x: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Multiply each complex coordinate of ``x`` by exp(i * phase)."""
    real, imag = halves(x)
    cos, sin = torch.cos(phase), torch.sin(phase)
    return torch.cat([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
