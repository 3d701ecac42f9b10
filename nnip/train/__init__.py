"""Training and export of nnip's networks (torch; the optional ``train`` extra).

Nothing outside this package imports torch: the inference side only ever sees the ONNX
files and their manifest entries this package writes.

- :mod:`nnip.train.tasks`   registry of trainable tasks (data, model, loss, export spec)
- :mod:`nnip.train.arch`    re-parameterisable ECB networks and their plain export form
- :mod:`nnip.train.data`    teacher cache, detail-weighted patches, worker-side degradation
- :mod:`nnip.train.loop`    time-budgeted, resumable training loop
- :mod:`nnip.train.export`  ONNX export, parity, measured margin, GFLOP, manifest entry
- ``python -m nnip.train TASK ...`` and ``python -m nnip.train.export RUN --name NAME``

Submodules are imported explicitly; importing this package does no work and loads no torch.
"""

__all__: list[str] = []
