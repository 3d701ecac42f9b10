"""Speed and memory of ``nnip develop`` on a 24-megapixel DNG (6000 x 4000) to 16-bit TIFF.

The DNG is made by the project's simulator (:func:`nnip.simulate.pairs.simulate_dng`, ISO
100, no optics: content matters little for speed) from a real photo: the largest photo in
``../shared/data/train/photos``, area-downscaled by 2 (to shed its JPEG and demosaic
residue) and mirror-tiled to 6000 x 4000. It is kept in ``benchmarks/_work/`` (ignored by
git) and reused while it exists. Each run is the real command, as a user types it::

    nnip develop big.dng -o OUT --format tiff --bits 16 --demosaic METHOD --overwrite --quiet

with ``--denoise`` and ``--lens`` stated explicitly, for these variants (``--variants``):

- ``all``: ``--demosaic nn --denoise auto --lens deblur`` (the three neural stages; the
  default develop once the models are installed);
- ``denoise+nn``: ``--demosaic nn --denoise auto --lens off``;
- ``nn``: ``--demosaic nn --denoise off --lens off``;
- ``all-int8``, ``nn-int8``: the same with ``--precision int8`` (each model's int8 variant
  where one ships, fp32 for the others: what the default ``--precision auto`` runs on a
  CPU with VNNI; the other rows pin fp32);
- ``ahd`` and ``bilinear``: LibRaw's, no neural stage;

each started from a fresh wrapper process whose only child is the command, so the peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) is that run's alone. Wall seconds include
start-up, decoding, the pipeline and the TIFF encoding. The output's size is checked.
A variant whose model is not installed is skipped with a note.

Bars: ``nn`` <= 30 s and 2 GiB (issue "nnip develop"); ``denoise+nn`` <= 45 s and 2 GiB
(issue "denoise"); ``all`` <= 45 s (issue "speed") and 2.5 GiB (issue "lens"). The load
average before the runs is printed: the numbers are only as good as the machine is idle.

    python benchmarks/develop_speed.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from common import REPO, Section, describe_model, markdown_table, publish, run_measured, shared_path
from develop_end_to_end import nnip_command

__all__ = ["make_source", "make_big_dng", "main"]

#: name -> (extra arguments, models needed, (seconds bar, MiB bar) or None).
VARIANTS: dict[str, tuple[list[str], tuple[str, ...], tuple[float, float] | None]] = {
    "all": (["--demosaic", "nn", "--denoise", "auto", "--lens", "deblur"],
            ("demosaic", "denoise", "lens"), (45.0, 2560.0)),
    "denoise+nn": (["--demosaic", "nn", "--denoise", "auto", "--lens", "off"],
                   ("demosaic", "denoise"), (45.0, 2048.0)),
    "nn": (["--demosaic", "nn", "--denoise", "off", "--lens", "off"], ("demosaic",),
           (30.0, 2048.0)),
    # The same with each model's int8 variant where one ships (--precision int8; what
    # --precision auto, the default, runs on a CPU with VNNI): fp32 for the others.
    # Run only where at least one of their models has an int8 variant (:func:`missing_models`).
    "all-int8": (["--demosaic", "nn", "--denoise", "auto", "--lens", "deblur", "--precision", "int8"],
                 ("demosaic", "denoise", "lens"), (45.0, 2560.0)),
    "nn-int8": (["--demosaic", "nn", "--denoise", "off", "--lens", "off", "--precision", "int8"],
                ("demosaic",), (30.0, 2048.0)),
    "ahd": (["--demosaic", "ahd", "--denoise", "off", "--lens", "off"], (), None),
    "bilinear": (["--demosaic", "bilinear", "--denoise", "off", "--lens", "off"], (), None),
}
WORK = REPO / "benchmarks" / "_work" / "develop_speed"


def make_source(width: int, height: int) -> tuple[np.ndarray, str]:
    """(height, width, 3) float32 sRGB made from a real photo, and where it came from."""
    from nnip.core.imageio import read_image  # noqa: PLC0415
    from nnip.simulate.resize import imresize  # noqa: PLC0415

    photos = shared_path("data", "train", "photos")
    candidates = sorted(photos.glob("*.jpg"), key=lambda p: p.stat().st_size) if photos else []
    if not candidates:
        rng = np.random.default_rng(0)  # no photo here: smooth random texture, same cost
        small = rng.random((height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
        tile = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)
        return tile[:height, :width], "random 16-px blocks (no ../shared photos)"
    photo = read_image(candidates[-1]).pixels
    half = np.clip(imresize(photo, 0.5), 0.0, 1.0).astype(np.float32)
    reps = (-(-height // half.shape[0]), -(-width // half.shape[1]))
    tiled = np.pad(half, ((0, (reps[0] - 1) * half.shape[0]), (0, (reps[1] - 1) * half.shape[1]),
                          (0, 0)), mode="symmetric")  # mirror tiling: no seams
    return np.ascontiguousarray(tiled[:height, :width]), (
        f"{candidates[-1].name} ({photo.shape[1]}x{photo.shape[0]}), area/2, mirror-tiled")


def make_big_dng(path: Path, width: int, height: int) -> str:
    """Write the test DNG unless it exists; return a description of its source."""
    note = path.with_suffix(".txt")
    if path.exists() and note.exists():
        return note.read_text(encoding="utf-8").strip()
    from nnip.simulate.pairs import simulate_dng  # noqa: PLC0415

    print(f"simulating a {width}x{height} DNG ...", file=sys.stderr, flush=True)
    source, text = make_source(width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_dng(source, path, iso=100.0, optics=False, seed=0)
    note.write_text(text + "\n", encoding="utf-8")
    return text


def _tiff_size(path: Path) -> tuple[int, int] | None:
    try:
        import tifffile  # noqa: PLC0415

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return int(page.shape[1]), int(page.shape[0])
    except (OSError, ValueError, IndexError):
        return None


def run_all(prefix: list[str], dng: Path, variants: list[str], size: tuple[int, int],
            models_dir: Path | None) -> tuple[list[list[object]], list[bool]]:
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="nnip_speed_") as tmp:
        out = Path(tmp)
        for name in variants:
            extra, _, bar = VARIANTS[name]
            command = [*prefix, "develop", str(dng), "-o", str(out), "--format", "tiff", "--bits",
                       "16", *extra, "--overwrite", "--quiet"]
            if models_dir is not None:
                command += ["--models-dir", str(models_dir)]
            print(f"developing: {name} ...", file=sys.stderr, flush=True)
            cpu_before = _children_cpu_seconds()
            result = run_measured(command)
            cpu = _children_cpu_seconds() - cpu_before
            got = _tiff_size(out / f"{dng.stem}.tif")
            ran = result.returncode == 0 and got == size
            if not ran:
                print(f"  failed (rc {result.returncode}, output {got}): "
                      f"{result.stderr.strip()[-500:]}", file=sys.stderr)
            ok = ran and (bar is None or (result.seconds <= bar[0]
                                          and result.peak_rss_mb <= bar[1]))
            verdicts.append(ok)
            megapixels = size[0] * size[1] / 1e6
            rows.append([name, " ".join(extra), f"{result.seconds:.1f}", f"{cpu:.1f}",
                         f"{megapixels / result.seconds:.2f}", f"{result.peak_rss_mb:.0f}",
                         f"{bar[0]:g} s, {bar[1]:.0f} MiB" if bar else "-",
                         ("pass" if ok else "FAIL") if ran else f"FAIL (rc {result.returncode})"])
            (out / f"{dng.stem}.tif").unlink(missing_ok=True)
    return rows, verdicts


def installed_models(models_dir: Path | None) -> dict[str, object]:
    """task -> the ModelSpec nnip would use, for the tasks the variants need; ``TASK-int8``
    -> that model's int8 variant where one is installed."""
    from nnip.core.errors import ModelError  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415

    try:
        registry = Registry(models_dir)
    except ModelError:
        return {}
    found = {}
    for task in ("demosaic", "denoise", "lens"):
        try:
            found[task] = registry.find(task)
            found[f"{task}-int8"] = registry.with_precision(found[task], "int8")
        except ModelError:
            pass
    return found


def missing_models(variant: str, models: dict[str, object]) -> str:
    """What keeps ``variant`` from running ('' when nothing): a model it needs, or for an
    ``-int8`` variant, an int8 variant of at least one of its models."""
    needs = VARIANTS[variant][1]
    missing = [task for task in needs if task not in models]
    if not missing and variant.endswith("-int8") and not any(f"{t}-int8" in models for t in needs):
        missing = [" / ".join(f"{t}-int8" for t in needs)]
    return ", ".join(missing)


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of every waited-for descendant so far (the wrapper's
    child included: rusage sums a whole waited-for tree)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_size, default=(6000, 4000), metavar="WxH",
                        help="DNG size (default 6000x4000)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated variants (default {','.join(VARIANTS)})")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="directory with manifest.json (default: as nnip resolves it)")
    parser.add_argument("--fresh", action="store_true", help="simulate the DNG again")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md",
                        help="also replace this script's section in that file")
    args = parser.parse_args(argv)
    models = installed_models(args.models_dir)
    wanted = [v for v in args.variants.split(",") if v]
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    variants = [v for v in wanted if not missing_models(v, models)]
    skipped = [v for v in wanted if v not in variants]
    prefix = nnip_command()
    dng = WORK / f"big_{args.size[0]}x{args.size[1]}.dng"
    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    source = make_big_dng(dng, *args.size)
    load = os.getloadavg()
    rows, verdicts = run_all(prefix, dng, variants, args.size, args.models_dir)
    lines = [
        f"Input: {args.size[0]}x{args.size[1]} 14-bit RGGB DNG ({dng.stat().st_size / 2**20:.0f} "
        f"MiB) by `simulate_dng(iso=100, optics=False)` from {source}. Command per run: `nnip "
        "develop big.dng -o OUT --format tiff --bits 16 ARGUMENTS --overwrite --quiet`,"
        f" each in a fresh wrapper process. Load average before the runs: {load[0]:.2f} / "
        f"{load[1]:.2f} / {load[2]:.2f} ({os.cpu_count()} cores): with other jobs running, "
        "wall time overstates what an idle machine takes; CPU s (user + system of the run) "
        "does not depend on the load.",
        "",
        markdown_table(["variant", "arguments", "wall s", "CPU s", "MP/s", "peak RSS MiB",
                        "bar", "verdict"], rows),
        "",
    ]
    for name in skipped:
        lines.append(f"**{name}: skipped**: no {missing_models(name, models)} model installed.  ")
    section = Section("develop_speed", f"nnip develop speed: {args.size[0]}x{args.size[1]} DNG "
                      "to 16-bit TIFF, wall time and peak RSS", "\n".join(lines),
                      [describe_model(spec) for spec in models.values()], argv)
    publish(section, args.results)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
