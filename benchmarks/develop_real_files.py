"""Real RAW files through the real ``nnip develop``: good files develop, bad ones say why.

1. Both complete RAWs in ``../shared/data/raw/real/`` (Canon EOS D30 CRW, Kodak DC50 KDC)
   are developed as a user would::

       nnip develop FILE -o OUT --demosaic METHOD --json            # TIFF 16-bit sRGB
       nnip develop FILE -o OUT --demosaic METHOD --wb auto --json
       nnip develop FILE -o OUT --demosaic METHOD --format dng --json

   for METHOD = nn (when a ``demosaic`` model is installed) and ahd. Plausibility numbers per
   result: mean sRGB value, the share of blown pixels (all three channels at 1: white
   with no detail), the share with any channel at 1, and the grey-world deviation (the
   largest relative departure of a channel's mean linear value from the mean of the three:
   0 for a grey-average picture; a tungsten scene under daylight balance is far from 0 and
   right to be). The linear DNG is rendered by LibRaw (rawpy ``postprocess``, its camera
   white balance = our AsShotNeutral, sRGB curve) and compared with our own sRGB develop.
   A downsized picture of each (camera white balance | auto) goes to
   ``benchmarks/figures/develop_real_<file>.png``.

2. Every file in ``truncated/`` and ``unsupported/`` goes through ``nnip develop FILE`` on
   its own: the bar is exit code 1 and exactly one line on stderr, ``FILE: reason``.

    python benchmarks/develop_real_files.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from common import REPO, Section, describe_model, markdown_table, publish, shared_path
from develop_end_to_end import demosaic_model, nnip_command

__all__ = ["plausibility", "develop_real", "bad_file_rows", "main"]

FIGURES = REPO / "benchmarks" / "figures"
PANEL_WIDTH = 400
#: Plausible: mean sRGB value within this range, and at most this share of blown pixels.
MEAN_RANGE = (0.1, 0.9)
BLOWN_MAX = 0.05
#: LibRaw's render of our linear DNG vs our own develop: mean abs difference, 8-bit levels.
DNG_BAR_LEVELS = 2.0


def plausibility(srgb: np.ndarray) -> dict[str, float]:
    """Mean, blown and clipped shares, grey-world deviation of an sRGB image in [0, 1].

    The grey-world deviation is ``max_c |m_c / mean(m) - 1|`` over the channel means ``m`` of
    the linear values.
    """
    from nnip.develop.colour import decode_transfer  # noqa: PLC0415

    means = decode_transfer(np.clip(srgb, 0, 1), "srgb").reshape(-1, 3).mean(axis=0)
    return {
        "mean": float(srgb.mean()),
        "blown": float(np.mean(np.all(srgb >= 1.0, axis=-1))),
        "clipped": float(np.mean(np.any(srgb >= 1.0, axis=-1))),
        "grey_world": float(np.max(np.abs(means / means.mean() - 1.0))),
        "mean_rgb": [round(float(v) * 255) for v in srgb.reshape(-1, 3).mean(axis=0)],
    }


def _run(prefix: list[str], src: Path, out: Path, *extra: str) -> tuple[int, dict, str]:
    done = subprocess.run([*prefix, "develop", str(src), "-o", str(out), "--overwrite",
                           "--json", *extra], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    record = json.loads(lines[-1]) if lines else {}
    return done.returncode, record, done.stderr.strip()


def _libraw_render(dng: Path) -> np.ndarray:
    import rawpy  # noqa: PLC0415

    with rawpy.imread(str(dng)) as raw:
        out = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92),
                              output_bps=16, adjust_maximum_thr=0.0,
                              output_color=rawpy.ColorSpace.sRGB)
    return out.astype(np.float32) / 65535.0


def _panel(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image as PILImage  # noqa: PLC0415

    image = PILImage.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8))
    height = round(image.height * PANEL_WIDTH / image.width)
    return np.asarray(image.resize((PANEL_WIDTH, height), PILImage.Resampling.LANCZOS))


def develop_real(prefix: list[str], src: Path, method: str, work: Path,
                 models_dir: Path | None) -> tuple[list[list[object]], list[bool], list]:
    """Rows (camera WB, auto WB, DNG) for one file and method; verdicts; the two sRGB images."""
    from nnip.core.imageio import read_image  # noqa: PLC0415

    extra = ["--demosaic", method] + (["--models-dir", str(models_dir)] if models_dir else [])
    rows, verdicts, images = [], [], []
    for label, options in (("camera WB", []), ("auto WB", ["--wb", "auto"])):
        out = work / f"{method}-{label.split()[0]}"
        rc, record, stderr = _run(prefix, src, out, *extra, *options)
        if rc != 0:
            rows.append([src.name, method, label, rc, "-", "-", "-", "-", "-", stderr[-200:],
                         "FAIL"])
            verdicts.append(False)
            continue
        pixels = read_image(Path(record["output"])).pixels
        images.append(pixels)
        p = plausibility(pixels)
        ok = MEAN_RANGE[0] <= p["mean"] <= MEAN_RANGE[1] and p["blown"] <= BLOWN_MAX
        verdicts.append(ok)
        rows.append([src.name, method, label, rc, f"{p['mean']:.3f}", str(p["mean_rgb"]),
                     f"{p['blown']:.2%}", f"{p['clipped']:.2%}", f"{p['grey_world']:.2f}",
                     "; ".join(record.get("notices", [])) or "-", "pass" if ok else "FAIL"])
    rc, record, stderr = _run(prefix, src, work / f"{method}-dng", *extra, "--format", "dng")
    if rc == 0 and images:
        diff = np.abs(_libraw_render(Path(record["output"])) - images[0]).mean() * 255
        ok = diff <= DNG_BAR_LEVELS
        rows.append([src.name, method, "linear DNG -> LibRaw", rc, "-", "-", "-", "-", "-",
                     f"mean abs vs our TIFF: {diff:.2f} / 255", "pass" if ok else "FAIL"])
    else:
        ok = False
        rows.append([src.name, method, "linear DNG -> LibRaw", rc, "-", "-", "-", "-", "-",
                     stderr[-200:], "FAIL"])
    verdicts.append(ok)
    return rows, verdicts, images


def save_figure(name: str, images: list[np.ndarray]) -> Path:
    """Camera WB | auto WB side by side, each ``PANEL_WIDTH`` wide, as a PNG in figures/."""
    from PIL import Image as PILImage  # noqa: PLC0415

    panels = [_panel(image) for image in images]
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    strip = np.concatenate([panels[0], gap, *panels[1:]], axis=1) if len(panels) > 1 \
        else panels[0]
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"develop_real_{name}.png"
    PILImage.fromarray(strip).save(path, optimize=True)
    return path


def bad_file_rows(prefix: list[str], files: list[Path], work: Path) -> tuple[list, list[bool]]:
    """One row per bad file: exit code, stderr lines, the line; verdict rc 1 and one line."""
    rows, verdicts = [], []
    for src in files:
        done = subprocess.run([*prefix, "develop", str(src), "-o", str(work / "bad")],
                              capture_output=True, text=True)
        lines = done.stderr.strip().splitlines()
        ok = done.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"{src}: ")
        verdicts.append(ok)
        line = lines[0].replace(f"{src}: ", "FILE: ", 1) if lines else "(nothing)"
        rows.append([f"{src.parent.name}/{src.name}", done.returncode, len(lines),
                     f"`{line}`", "pass" if ok else "FAIL"])
    return rows, verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="directory with manifest.json (default: as nnip resolves it)")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md",
                        help="also replace this script's section in that file")
    args = parser.parse_args(argv)
    raw_dir = shared_path("data", "raw")
    if raw_dir is None:
        print("note: ../shared/data/raw is absent; nothing to measure", file=sys.stderr)
        return 0
    spec = demosaic_model(args.models_dir)
    methods = (["nn"] if spec is not None else []) + ["ahd"]
    prefix = nnip_command()
    real = sorted((raw_dir / "real").iterdir())
    bad = sorted((raw_dir / "truncated").iterdir()) + sorted((raw_dir / "unsupported").iterdir())
    rows, verdicts, figures = [], [], []
    with tempfile.TemporaryDirectory(prefix="nnip_real_") as tmp:
        work = Path(tmp)
        for src in real:
            for method in methods:
                print(f"developing {src.name} with {method} ...", file=sys.stderr, flush=True)
                got, ok, images = develop_real(prefix, src, method, work, args.models_dir)
                rows += got
                verdicts += ok
                if method == methods[0] and images:
                    figures.append((src.name, save_figure(src.stem, images)))
        print(f"trying {len(bad)} bad files ...", file=sys.stderr, flush=True)
        bad_rows, bad_verdicts = bad_file_rows(prefix, bad, work)
    real_table = markdown_table(
        ["file", "--demosaic", "output", "rc", "mean sRGB", "mean RGB (8-bit)", "blown",
         "a channel at 1", "grey-world dev.", "notices", "verdict"], rows)
    bad_table = markdown_table(["file", "rc", "stderr lines", "the line", "verdict"], bad_rows)
    pictures = "\n".join(
        f"![{name}: camera WB | auto WB](figures/{path.name})  \n*{name}, `--demosaic "
        f"{methods[0]}`: camera white balance (left), `--wb auto` (right).*\n"
        for name, path in figures)
    body = "\n\n".join([
        f"Good files (`real/`): developed to 16-bit sRGB TIFF and to a linear DNG. Plausible: "
        f"exit 0, mean sRGB value in {MEAN_RANGE[0]}..{MEAN_RANGE[1]}, at most "
        f"{BLOWN_MAX:.0%} blown pixels (all channels at 1); LibRaw's render of our linear DNG within "
        f"{DNG_BAR_LEVELS:g}/255 (mean abs) of our TIFF. The D30 file has no as-shot white "
        "balance (daylight is used: its tungsten-lit scene comes out warm, as it should, "
        "with the red channel of the lit parts at 1); "
        "LibRaw knows no colour matrix for the DC50 (camera RGB is taken as linear sRGB).",
        real_table, pictures,
        f"Bad files (`truncated/`, `unsupported/`), each alone: `nnip develop FILE -o OUT`. "
        "Bar: exit code 1 and exactly one line on stderr (`FILE` stands for the path).",
        bad_table,
        f"**{sum(verdicts)}/{len(verdicts)} good-file checks and {sum(bad_verdicts)}/"
        f"{len(bad_verdicts)} bad files pass.**",
    ])
    section = Section("develop_real_files", "nnip develop on real RAW files: good and bad",
                      body, [describe_model(spec)] if spec is not None else [], argv)
    publish(section, args.results)
    return 0 if all(verdicts) and all(bad_verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
