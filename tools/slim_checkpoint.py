"""Write a training checkpoint without its optimizer state: the weights, config and step.

A lent GPU's device call carries 64 MiB in all (checkpoints/README.md, "On a lent GPU");
a ``last.pt`` is ~3x its weights (Adam's two moments). The slim file starts a run there
with ``--init SLIM.pt`` (a new run from step 0 with the checkpoint's network and config,
then ``--set``), not ``--resume``.

    python tools/slim_checkpoint.py checkpoints/denoise/last.pt .gpu/c/denoise.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# "metrics" (a few numbers) keeps the validation figure an export writes to the manifest.
KEEP = ("task", "config", "step", "provenance", "model", "metrics")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    import torch  # noqa: PLC0415  (a training dependency, not the package's)

    full = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    slim = {key: full[key] for key in KEEP if key in full}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, args.out)
    print(f"{args.out}: step {slim.get('step')}, {args.out.stat().st_size / 2**20:.1f} MiB "
          f"(from {args.checkpoint.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
