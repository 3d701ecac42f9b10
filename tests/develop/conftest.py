"""Fixtures for the develop tests; the helpers themselves live in ``dev_scenes``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev_scenes import nearest_demosaic_net
from onnx_builders import install
from nnip.core.models import Registry


@pytest.fixture()
def demosaic_registry(tmp_path: Path) -> Registry:
    """A models directory holding only the nearest-neighbour demosaic model."""
    spec = {
        "inputs": [{"name": "mosaic", "channels": 4, "layout": "bayer_packed",
                    "range": [0, 1], "transfer": "linear"}],
        "outputs": [{"name": "rgb", "channels": 3, "layout": "rgb", "range": [0, 1],
                     "transfer": "linear"}],
    }
    return install(tmp_path / "models", {"demosaic-nearest": nearest_demosaic_net()},
                   task="demosaic", overrides={"demosaic-nearest": spec})
