"""The develop pipeline: RAW frame -> finished, colour-managed image.

``process_file`` is what ``nnip develop`` calls per file; ``develop`` is the pipeline on a
:class:`~nnip.raw.frame.RawFrame` in memory; the stage order is
:data:`~nnip.develop.pipeline.STAGE_ORDER`. Submodules are imported on first use, so
``import nnip.develop`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["process_file", "develop", "DevelopOptions", "build_pipeline", "STAGE_ORDER"]

_HOMES = {
    "process_file": "nnip.develop.process",
    "develop": "nnip.develop.pipeline",
    "DevelopOptions": "nnip.develop.pipeline",
    "build_pipeline": "nnip.develop.pipeline",
    "STAGE_ORDER": "nnip.develop.pipeline",
}


def __getattr__(name: str) -> Any:
    # Lazy: the CLI imports this package for --help; numpy/rawpy/Pillow load on first use.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'nnip.develop' has no attribute {name!r}")
