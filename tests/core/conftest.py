"""Fixtures for the core tests: seeded random data and small installed ONNX models.

The graph builders live in ``tests/onnx_builders.py`` so tests of other packages can use
them too (``from onnx_builders import conv_net``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from nnip.core.models import Registry

# `tests/` is on sys.path through `pythonpath = ["tests"]` in pyproject's pytest options.
from onnx_builders import BuiltNet, install


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture()
def install_models(tmp_path: Path) -> Callable[..., Registry]:
    """``install_models({"name": net, ...}, overrides=...) -> Registry`` in a fresh directory.

    Model names must be ``<task>-<something>`` for Registry lookups by alias; the task is
    ``upscale`` unless given.
    """
    counter = iter(range(1_000_000))

    def make(nets: dict[str, BuiltNet], **kwargs: object) -> Registry:
        return install(tmp_path / f"models{next(counter)}", nets, **kwargs)

    return make
