"""Before / after of switching numpy's huge-page advice off in the commands (nnip.core.hugepages).

The same two commands run in turns, with numpy's default advice restored through its own
switch (``NUMPY_MADVISE_HUGEPAGE=1``, which the commands respect: "before") and without it
(the commands' choice: "after"); each in a fresh wrapper process (wall seconds, peak RSS):

- a 24 MP three-stage develop: develop_speed.py's 6000x4000 DNG, ``--demosaic nn --denoise
  auto --lens deblur``, 16-bit TIFF;
- a 24 MP fast upscale: upscale_speed.py's 6000x4000 JPEG, JPEG out.

    python benchmarks/hugepages.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from common import Section, ab_rows, markdown_table, publish, run_measured

SWITCH = "NUMPY_MADVISE_HUGEPAGE"


def _thp_policy() -> str:
    """The kernel's transparent-huge-page settings (the bracketed choices), if readable."""
    found = []
    for name in ("enabled", "defrag"):
        try:
            text = Path(f"/sys/kernel/mm/transparent_hugepage/{name}").read_text()
        except OSError:
            return "unknown"
        found.append(f"{name} {text.split('[')[1].split(']')[0] if '[' in text else text.strip()}")
    return ", ".join(found)


def main(argv: Sequence[str] | None = None) -> int:
    from develop_speed import WORK, make_big_dng, nnip_command  # noqa: PLC0415
    from upscale_speed import make_test_jpeg, nnups_command  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)

    dng = WORK / "big_6000x4000.dng"
    make_big_dng(dng, 6000, 4000)
    with tempfile.TemporaryDirectory(prefix="nnip-hugepages-") as tmp:
        jpeg = Path(tmp) / "p24.jpg"
        make_test_jpeg(jpeg, 6000, 4000)
        out = Path(tmp) / "out"
        commands = {
            "24 MP develop, all three stages": [
                *nnip_command(), "develop", str(dng), "-o", str(out), "--format", "tiff",
                "--bits", "16", "--demosaic", "nn", "--denoise", "auto", "--lens", "deblur",
                "--overwrite", "--quiet", "--device", "cpu"],
            "24 MP fast upscale, JPEG out": [
                *nnups_command(), "upscale", str(jpeg), "-o", str(out), "--model", "upscale-fast",
                "--overwrite", "--quiet", "--device", "cpu", "--threads", "2"],
        }
        base = {k: v for k, v in os.environ.items() if k != SWITCH}
        envs = {"before (numpy's advice)": {**base, SWITCH: "1"}, "after (no advice)": base}
        runs: dict[tuple[str, str], list] = {}
        load = os.getloadavg()
        for _ in range(args.rounds):
            for what, command in commands.items():
                for when, env in envs.items():
                    result = run_measured(command, env=env)
                    if result.returncode != 0:
                        raise RuntimeError(f"{what} ({when}) failed: {result.stderr}")
                    runs.setdefault((what, when), []).append(result)
                    print(f"{what} | {when} | {result.seconds:.1f} s | "
                          f"{result.peak_rss_mb:.0f} MiB", flush=True)
    rows = ab_rows(runs, list(commands), list(envs), digits=1)
    body = (
        f"Kernel transparent huge pages: {_thp_policy()}. {args.rounds} rounds, the commands "
        f"and settings in turns; load average before: {', '.join(f'{v:.1f}' for v in load)} "
        "(valid on an idle machine only).\n\n"
        + markdown_table(["command", "numpy huge-page advice", "wall s per round", "best s",
                          "peak RSS MiB"], rows)
    )
    publish(Section("hugepages", "numpy's huge-page advice off in the commands: before / after",
                    body), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
