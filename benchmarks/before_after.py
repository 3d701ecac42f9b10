"""Before / after of a code change on whole commands: the working tree against a git commit.

"Before" is ``--before`` (default ``HEAD``) checked out in a temporary git worktree and run
with ``PYTHONPATH`` pointing at it (``python -m nnip.cli`` / ``python -m nnups.cli`` from a
directory outside both trees, so neither the working tree nor its editable install shadows
it); "after" is the working tree, run the same way. Each command runs in a fresh wrapper
process (wall seconds, peak RSS), the two sides and the commands in turns, ``--rounds``
times, so a drift in the machine's load hits both alike. Model files come from each tree's
own ``onnx_models/`` (set ``--models-dir`` to pin one set for both).

Commands (``--commands``, comma-separated keys):

- ``develop``: develop_speed.py's 24 MP DNG, all three neural stages, 16-bit TIFF;
- ``upscale``: a 24 MP JPEG from a real photo, ``nnups upscale`` with the default model
  (upscale-fast), JPEG out;
- ``upscale8``: an 8 MP JPEG, upscale-fast (gflops.py's command: the 85 % bar's);
- ``quality8``: the same JPEG through upscale-quality.

All in fp32: benchmarks/common.py sets ``NNIP_PRECISION=fp32`` for the commands it starts
(the default ``--precision auto`` would run int8 variants on a CPU with VNNI).

    python benchmarks/before_after.py --before HEAD --label spinning --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from common import REPO, Measured, Section, ab_rows, markdown_table, publish, run_measured

COMMANDS = ("develop", "upscale", "upscale8", "quality8")


def _worktree(ref: str, where: Path) -> str:
    """Check ``ref`` out at ``where`` (detached); returns its short commit."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(where), ref],
                   check=True)
    done = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _argvs(keys: Sequence[str], work: Path, models_dir: Path | None) -> dict[str, list[str]]:
    """Each command's arguments after ``python -m PACKAGE.cli`` (inputs made here)."""
    from develop_speed import WORK, make_big_dng  # noqa: PLC0415
    from upscale_speed import make_test_jpeg  # noqa: PLC0415

    out = str(work / "out")
    common = ["--overwrite", "--quiet", "--device", "cpu"]
    if models_dir is not None:
        common += ["--models-dir", str(models_dir)]
    argvs = {}
    if "develop" in keys:
        dng = WORK / "big_6000x4000.dng"
        make_big_dng(dng, 6000, 4000)
        argvs["develop"] = ["nnip.cli", "develop", str(dng), "-o", out, "--format", "tiff",
                            "--bits", "16", "--demosaic", "nn", "--denoise", "auto", "--lens",
                            "deblur", *common]
    if "upscale" in keys:
        jpeg = work / "p24.jpg"
        make_test_jpeg(jpeg, 6000, 4000)
        argvs["upscale"] = ["nnups.cli", "upscale", str(jpeg), "-o", out, "--threads", "2", *common]
    if {"upscale8", "quality8"} & set(keys):
        jpeg = work / "p8.jpg"
        make_test_jpeg(jpeg, 3464, 2309)
        for key, model in (("upscale8", "upscale-fast"), ("quality8", "upscale-quality")):
            if key in keys:
                argvs[key] = ["nnups.cli", "upscale", str(jpeg), "-o", out, "--model", model,
                              "--threads", "2", *common]
    return argvs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="git commit of the 'before' side")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help=f"comma-separated, of {', '.join(COMMANDS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="change",
                        help="what changed (one word): names the RESULTS.md section, so "
                             "several changes keep their own records")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)
    keys = [k for k in args.commands.split(",") if k]
    unknown = set(keys) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown commands: {', '.join(sorted(unknown))}")

    load = os.getloadavg()
    runs: dict[tuple[str, str], list[Measured]] = {}
    with tempfile.TemporaryDirectory(prefix="nnip-before-after-") as tmp:
        work = Path(tmp)
        before_tree = work / "before"
        commit = _worktree(args.before, before_tree)
        try:
            trees = {f"before ({commit})": before_tree, "after (working tree)": REPO}
            argvs = _argvs(keys, work, args.models_dir)
            for _ in range(args.rounds):
                for key, command in argvs.items():
                    for side, tree in trees.items():
                        env = {**os.environ, "PYTHONPATH": str(tree)}
                        result = run_measured([sys.executable, "-m", *command], env=env, cwd=work)
                        if result.returncode != 0:
                            raise RuntimeError(f"{key} ({side}) failed: {result.stderr}")
                        runs.setdefault((key, side), []).append(result)
                        print(f"{key} | {side} | {result.seconds:.2f} s | "
                              f"{result.peak_rss_mb:.0f} MiB", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)],
                           check=False)
    rows = ab_rows(runs, list(argvs), list(trees))
    body = (
        f"{args.rounds} rounds, the commands and both sides in turns; load average before: "
        f"{', '.join(f'{v:.1f}' for v in load)} (valid on an idle machine only). Commands: "
        + "; ".join(f"`python -m {' '.join(a[:2])} ...` ({k})" for k, a in argvs.items()) + ".\n\n"
        + markdown_table(["command", "tree", "wall s per round", "best s", "peak RSS MiB"], rows)
    )
    publish(Section(f"before_after_{args.label}",
                    f"Before / after ({args.label}) on whole commands: {commit} vs the working tree",
                    body, argv=argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
