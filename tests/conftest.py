"""Shared pytest set-up: GPU tests are skipped cleanly on machines without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
if not torch.cuda.is_available():
    # Triton's interpreter (CPU tensors) is chosen when triton.language is first imported, and
    # under xdist any test module may import it first (torch.utils.flop_counter does): set it now.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def devices() -> list[str]:
    """Devices to parametrise device-agnostic tests over: cpu, plus cuda when present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=devices())
def device(request) -> torch.device:
    """Each test using this fixture runs once per available device."""
    return torch.device(request.param)
