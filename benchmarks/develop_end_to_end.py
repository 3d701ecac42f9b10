"""End to end: clean Kodak24 -> the project's simulator -> DNG -> ``nnip develop`` -> PSNR.

Each clean image (768x512 sRGB, ``../shared/data/bench/Kodak24``) becomes a DNG through
:func:`nnip.simulate.pairs.simulate_dng` with no optics (``optics=False``: no diffraction,
no lens blur, no OLPF), the Canon EOS 5D Mark III colour matrix, D65 light, 0 EV (diffuse
white at the raw white level), 14 bits, the four Bayer phases in turn, and NO sensor noise
(``noise=False``: only the 14-bit quantisation); the quantisation's own PSNR ceiling is
printed.

Then the real command develops the whole set, as a user types it::

    nnip develop DNGS/*.dng --colorspace srgb --bits 16 --demosaic METHOD -o OUT --quiet

for METHOD = nn (only when a ``demosaic`` model is installed), ahd and bilinear, each run
in a fresh wrapper process (wall seconds for the set, peak RSS). PSNR over RGB of the 16-bit
result against the clean image (the simulator's ground truth: the clean image clipped to
[0, 1]), 8-pixel border excluded, as in the shared demosaicing protocol.

Bar (issue "nnip develop"): mean PSNR >= 40 dB.

    python benchmarks/develop_end_to_end.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common import Section, describe_model, markdown_table, publish, run_measured, shared_path

__all__ = ["nnip_command", "demosaic_model", "psnr_rgb", "simulate_set", "main"]

KODAK = ("data", "bench", "Kodak24")
METHODS = ("nn", "ahd", "bilinear")
BAR_DB = 40.0
BORDER = 8
#: The simulator's lowest-noise setting (it has no noise-free option).
ISO, SENSOR = 50.0, "sony-a7rm2"
CAMERA = "Canon EOS 5D Mark III"
NEEDED_OPTIONS = ("--format", "--bits", "--colorspace", "--demosaic", "--output-dir", "--quiet")


def nnip_command() -> list[str]:
    """argv prefix of the installed ``nnip`` (else ``python -m nnip.cli``), checked with --help.

    Raises
    ------
    RuntimeError
        ``nnip develop --help`` fails or lacks an option the develop benchmarks pass.
    """
    exe = shutil.which("nnip")
    prefix = [exe] if exe else [sys.executable, "-m", "nnip.cli"]
    done = subprocess.run([*prefix, "develop", "--help"], capture_output=True, text=True)
    missing = [opt for opt in NEEDED_OPTIONS if opt not in done.stdout]
    if done.returncode != 0 or missing:
        raise RuntimeError(f"`nnip develop --help` failed (rc {done.returncode}) or lacks "
                           f"{', '.join(missing) or '-'}: {done.stderr.strip()[-300:]}")
    return prefix


def demosaic_model(models_dir: Path | None) -> object | None:
    """The ModelSpec ``nnip develop --demosaic nn`` would use, or None (a note is printed)."""
    from nnip.core.errors import ModelError  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415

    try:
        return Registry(models_dir).find("demosaic")
    except ModelError as exc:
        print(f"note: nn skipped: {exc}", file=sys.stderr)
        return None


def psnr_rgb(result: np.ndarray, truth: np.ndarray, border: int = BORDER) -> float:
    """PSNR (dB, peak 1) over all three channels, ``border`` pixels left out at each edge.

    Both are float (H, W, 3) sRGB-encoded, clipped to [0, 1] first.
    """
    crop = (slice(border, -border), slice(border, -border))
    diff = np.clip(result[crop], 0, 1).astype(np.float64) - np.clip(truth[crop], 0, 1)
    return float(10.0 * np.log10(1.0 / max(np.mean(diff * diff), 1e-20)))


def simulate_set(folder: Path, work: Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """One DNG per clean image in ``work`` (the first ``limit``); returns {stem: ground
    truth (sRGB float32)}."""
    from nnip.core.imageio import read_image  # noqa: PLC0415
    from nnip.simulate.pairs import simulate_dng  # noqa: PLC0415
    from nnip.simulate.sensor import PATTERNS  # noqa: PLC0415

    truths = {}
    for index, path in enumerate(sorted(folder.glob("*.png"))[:limit]):
        record = simulate_dng(
            read_image(path).pixels, work / f"{path.stem}.dng", iso=ISO, sensor=SENSOR,
            camera=CAMERA, optics=False, olpf_px=0.0, exposure_ev=0.0, seed=index,
            pattern=PATTERNS[index % len(PATTERNS)], noise=False,
        )
        truths[path.stem] = record["truth"]
    return truths


def noise_ceiling(truths: dict[str, np.ndarray]) -> float:
    """Mean PSNR of the simulator's noise alone: what a perfect demosaic would score.

    The capture's clean camera RGB gets the same noise model (quantisation included) on
    every channel of every pixel, then the develop's white balance, colour matrix and sRGB
    curve (which amplify it), and is compared with the truth.
    """
    from nnip.simulate.color import camera_matrices, linear_to_srgb  # noqa: PLC0415
    from nnip.simulate.pairs import raw_pair  # noqa: PLC0415

    scores = []
    for index, truth in enumerate(truths.values()):
        rng = np.random.default_rng(index)
        record = raw_pair(truth, rng, iso=ISO, sensor=SENSOR,
                          cam_from_xyz=camera_matrices()[CAMERA], exposure=1.0, olpf_px=0.0,
                          noise_method="none")
        camera = record["target"]
        sigma = np.sqrt(record["noise_a"] * camera + record["noise_b"])
        noisy = camera + sigma * rng.standard_normal(camera.shape).astype(np.float32)
        srgb_from_camera = _srgb_from_xyz() @ _xyz_from_camera(record["cam_from_xyz"])
        linear = (noisy * record["wb_gains"]) @ srgb_from_camera.T
        scores.append(psnr_rgb(linear_to_srgb(np.clip(linear, 0, 1)), truth))
    return float(np.mean(scores))


def where_the_db_go(truths: dict[str, np.ndarray]) -> list[list[object]]:
    """Mean PSNR of the same numpy bilinear demosaic in three settings, noise-free.

    (1) the shared protocol (sRGB-encoded values mosaicked), (2) linear sRGB mosaicked
    (what a sensor records when its primaries are sRGB's), (3) this camera's RGB
    mosaicked, then white balance + colour matrix + sRGB curve (this benchmark's path).
    The gap from (2) to (3) is the colour matrix amplifying demosaic errors: a property of
    the camera, which every demosaicker pays here and the shared protocol does not.
    """
    from nnip.develop.demosaic import bayer_masks, bilinear_bayer  # noqa: PLC0415
    from nnip.simulate.color import (  # noqa: PLC0415
        D65_XY, camera_matrices, illuminant_wb, linear_to_srgb, scene_to_camera, srgb_to_linear)

    matrix = camera_matrices()[CAMERA]
    srgb_from_balanced = _srgb_from_xyz() @ _xyz_from_camera(matrix)
    gains = illuminant_wb(D65_XY, matrix)

    def bilinear(rgb: np.ndarray) -> np.ndarray:
        masks = np.moveaxis(bayer_masks(rgb.shape[:2], "RGGB"), 0, -1)
        return bilinear_bayer((rgb * masks).sum(axis=-1), "RGGB")

    scores: dict[str, list[float]] = {"protocol": [], "linear": [], "camera": []}
    for truth in truths.values():
        linear = srgb_to_linear(truth)
        scores["protocol"].append(psnr_rgb(bilinear(truth), truth))
        scores["linear"].append(psnr_rgb(linear_to_srgb(np.clip(bilinear(linear), 0, 1)), truth))
        camera = bilinear(scene_to_camera(linear, matrix)) * gains
        developed = linear_to_srgb(np.clip(camera @ srgb_from_balanced.T, 0, 1))
        scores["camera"].append(psnr_rgb(developed, truth))
    labels = {
        "protocol": "sRGB-encoded values mosaicked (the shared protocol)",
        "linear": "linear sRGB mosaicked, then sRGB curve",
        "camera": f"{CAMERA} camera RGB mosaicked, then WB + matrix (largest gain "
                  f"{np.abs(srgb_from_balanced * gains).max():.1f}) + sRGB curve",
    }
    return [[labels[k], f"{np.mean(v):.2f}"] for k, v in scores.items()]


def _xyz_from_camera(cam_from_xyz: np.ndarray) -> np.ndarray:
    from nnip.develop.colour import camera_to_xyz_matrix  # noqa: PLC0415

    return camera_to_xyz_matrix(cam_from_xyz)


def _srgb_from_xyz() -> np.ndarray:
    from nnip.develop.colour import colour_space  # noqa: PLC0415

    return colour_space("srgb").rgb_from_xyz_d65()


@dataclass
class Run:
    """One ``nnip develop`` over the set: PSNR per image, wall time, peak RSS, exit code."""

    method: str
    scores: dict[str, float]
    seconds: float
    peak_rss_mb: float
    returncode: int

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.scores.values()))) if self.scores else float("nan")


def develop_set(prefix: list[str], method: str, dngs: list[Path], out: Path,
                truths: dict[str, np.ndarray], models_dir: Path | None,
                precision: str | None = None) -> Run:
    """``nnip develop`` of ``dngs`` (``precision``: its ``--precision``; None: the
    environment's, fp32 in the benchmarks) and each result's PSNR against its truth."""
    from nnip.core.imageio import read_image  # noqa: PLC0415

    command = [*prefix, "develop", *map(str, dngs), "--colorspace", "srgb", "--bits", "16",
               "--format", "tiff", "--demosaic", method, "-o", str(out), "--quiet",
               "--overwrite"]
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
    if precision is not None:
        command += ["--precision", precision]
    print(f"developing {len(dngs)} DNGs with --demosaic {method} ...", file=sys.stderr, flush=True)
    measured = run_measured(command)
    if measured.returncode != 0:
        print(f"  rc {measured.returncode}: {measured.stderr.strip()[-800:]}", file=sys.stderr)
    scores = {}
    for stem, truth in truths.items():
        result = out / f"{stem}.tif"
        if result.exists():
            scores[stem] = psnr_rgb(read_image(result).pixels, truth)
    return Run(method, scores, measured.seconds, measured.peak_rss_mb, measured.returncode)


def nn_mean_psnr(models_dir: Path | None, precision: str, limit: int | None = None) -> float:
    """Mean PSNR of ``--demosaic nn`` over the (first ``limit``) simulated Kodak24 DNGs, the
    models of ``models_dir`` in ``precision``: how much of a variant's rounding survives
    the whole develop (benchmarks/int8_variants.py)."""
    folder = shared_path(*KODAK)
    if folder is None:
        raise FileNotFoundError("../shared/data/bench/Kodak24 is absent")
    with tempfile.TemporaryDirectory(prefix="nnip_e2e_") as tmp:
        work = Path(tmp)
        (work / "dng").mkdir()
        truths = simulate_set(folder, work / "dng", limit)
        run = develop_set(nnip_command(), "nn", sorted((work / "dng").glob("*.dng")), work / "nn",
                          truths, models_dir, precision)
    if run.returncode != 0 or len(run.scores) != len(truths):
        raise RuntimeError(f"nnip develop failed (rc {run.returncode}) on {len(truths) - len(run.scores)} DNGs")
    return run.mean


def _tables(runs: list[Run], stems: list[str]) -> tuple[str, str]:
    summary = []
    for run in runs:
        ok = run.returncode == 0 and len(run.scores) == len(stems) and run.mean >= BAR_DB
        summary.append([
            run.method, f"{run.mean:.2f}", f"{min(run.scores.values(), default=float('nan')):.2f}",
            f"{len(run.scores)}/{len(stems)}", f"{run.seconds:.1f}",
            f"{run.seconds / max(len(stems), 1):.2f}", f"{run.peak_rss_mb:.0f}",
            "pass" if ok else ("FAIL" if run.returncode == 0 else f"FAIL (rc {run.returncode})"),
        ])
    per_image = [[stem, *(f"{run.scores.get(stem, float('nan')):.2f}" for run in runs)]
                 for stem in stems]
    return (
        markdown_table(["--demosaic", "mean PSNR dB", "worst dB", "developed", "wall s (set)",
                        "s / image", "peak RSS MiB", f"bar >= {BAR_DB:g} dB"], summary),
        markdown_table(["image", *(run.method for run in runs)], per_image),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated --demosaic values (default {','.join(METHODS)})")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="directory with manifest.json (default: as nnip resolves it)")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md",
                        help="also replace this script's section in that file")
    args = parser.parse_args(argv)
    folder = shared_path(*KODAK)
    if folder is None:
        print("note: ../shared/data/bench/Kodak24 is absent; nothing to measure", file=sys.stderr)
        return 0
    spec = demosaic_model(args.models_dir)
    methods = [m for m in args.methods.split(",") if m and (m != "nn" or spec is not None)]
    prefix = nnip_command()
    with tempfile.TemporaryDirectory(prefix="nnip_e2e_") as tmp:
        work = Path(tmp)
        (work / "dng").mkdir()
        truths = simulate_set(folder, work / "dng")
        dngs = sorted((work / "dng").glob("*.dng"))
        runs = [develop_set(prefix, m, dngs, work / m, truths, args.models_dir) for m in methods]
    ceiling = noise_ceiling(truths)
    decomposition = markdown_table(["numpy bilinear demosaic, noise-free", "mean PSNR dB"],
                                   where_the_db_go(truths))
    summary, per_image = _tables(runs, list(truths))
    notes = [
        f"Input: {len(truths)} Kodak24 images -> `simulate_dng(optics=False, olpf_px=0, "
        f"camera={CAMERA!r}, exposure_ev=0, noise=False)`, 14-bit, "
        "the four Bayer phases in turn, no sensor noise. "
        f"Quantisation alone (a perfect demosaic) would score {ceiling:.2f} dB mean.",
        "Command per method: `nnip develop DNGS/*.dng --colorspace srgb --bits 16 --format tiff "
        "--demosaic METHOD -o OUT --quiet --overwrite` (one process for the whole set).",
        "PSNR over RGB of the 16-bit sRGB result against the clean image, 8-pixel border "
        "excluded.",
    ]
    if spec is None and "nn" in args.methods.split(","):
        notes.append("**nn: skipped**: no `demosaic` model in the manifest yet (one is being "
                     "trained); rerun this script once it is installed.")
    notes.append("Where the dB go: the camera's colour matrix (camera RGB -> sRGB) amplifies "
                 "demosaic errors; the shared protocol mosaics sRGB values and has no such "
                 "step. The same demosaic, three ways:")
    body = "\n\n".join(notes) + "\n\n" + decomposition + "\n\n" + summary \
        + "\n\n<details><summary>Per image (dB)</summary>\n\n" + per_image + "\n\n</details>\n"
    section = Section("develop_end_to_end",
                      "nnip develop end to end: Kodak24 -> simulated DNG -> sRGB 16-bit, PSNR",
                      body, [describe_model(spec)] if spec is not None else [], argv)
    publish(section, args.results)
    verdicts = [r.returncode == 0 and r.mean >= BAR_DB for r in runs if r.method == "nn"]
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
