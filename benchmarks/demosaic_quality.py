"""Bayer demosaicking quality on Kodak24 and McMaster, the literature protocol, and speed.

Protocol (../shared/README.md): the 8-bit sRGB values of each image, as floats in [0, 1],
are mosaicked as GRBG; each method demosaics the mosaic; the result is clipped to [0, 1]
(not rounded); PSNR over R, G and B with 8 pixels left out at each border, averaged over
the images of a set. Through this harness colour-demosaicing's bilinear and Malvar give
30.21 / 32.33 and 35.84 / 34.46 dB, the README's figures.

Methods:

- ours: each ``demosaic`` model of the manifest through ``nnip.develop.demosaic.nn_demosaic``
  (the develop stage's own call: GRBG is made RGGB by reflect-padding one column, packed,
  run through the engine, cropped). That function takes and returns *linear* values and
  applies the model's sRGB encoding itself, so the protocol's encoded mosaic is decoded
  before and the result encoded after (white balance 1, 1, 1): a float round trip.
- bilinear, Malvar 2004, Menon 2007: colour-demosaicing (PyPI).
- LibRaw AHD and DCB (and its bilinear, to validate the path): the mosaic written as a
  16-bit DNG with ``nnip.raw.dng.write_dng`` (value * 65535, black 0, white 65535, camera
  = linear sRGB primaries, neutral white balance), developed by rawpy with the raw colour
  space, linear gamma, no auto-brightening, white balance 1 and 16-bit output. LibRaw's
  bilinear through this path must match colour-demosaicing's to within 0.1 dB.
- demosaicnet (Gharbi et al. 2016, PyPI, the weights in its wheel): its native layout is a
  3-channel masked mosaic of phase GRBG (``demosaicnet.bayer``: "G r / b G"); the unpadded
  network is run on the mosaic reflect-padded by an even margin (which keeps the phase)
  and centre-cropped back.

The clock covers only the demosaic call (ours: engine tiles included; LibRaw: writing and
developing the DNG). Bars: ours >= 41.5 dB on Kodak24 and >= 38.5 dB on McMaster, and at
least twice demosaicnet's speed with the same thread count. Never train on these images.

    python benchmarks/demosaic_quality.py --threads 2 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from common import (
    Section,
    add_common_options,
    describe_model,
    load_models,
    markdown_table,
    publish,
    shared_path,
)

__all__ = [
    "SETS",
    "REFERENCE",
    "BARS",
    "Demosaicker",
    "load_set",
    "protocol_mosaic",
    "psnr_rgb",
    "shift_to_phase",
    "colour_method",
    "libraw_method",
    "demosaicnet_method",
    "ours_method",
    "baseline_methods",
    "Scores",
    "evaluate",
    "main",
]

SETS = ("Kodak24", "McMaster")
PATTERN = "GRBG"
BORDER = 8
#: The README's figures on this machine (Kodak24, McMaster), dB.
REFERENCE = {
    "bilinear": (30.21, 32.33),
    "Malvar 2004": (35.84, 34.46),
    "Menon 2007": (39.31, 34.24),
    "demosaicnet": (42.17, 39.19),
}
#: Quality bars for our model (Kodak24, McMaster), dB; and the speed factor over demosaicnet.
BARS = (41.5, 38.5)
SPEED_BAR = 2.0

#: (mosaic float32 (H, W) sRGB-encoded in [0, 1], pattern) -> float32 (H, W, 3), same
#: encoding, not clipped.
Demosaicker = Callable[[np.ndarray, str], np.ndarray]


# --------------------------------------------------------------------------- protocol


def load_set(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 (H, W, 3)) of every PNG / TIFF in ``folder``, sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff"))
    images = []
    for path in files:
        with Image.open(path) as image:
            images.append((path.stem, np.asarray(image.convert("RGB"))))
    return images


def protocol_mosaic(rgb: np.ndarray, pattern: str = PATTERN) -> np.ndarray:
    """The protocol's input: uint8 (H, W, 3) -> float32 (H, W) mosaic of values / 255."""
    from nnip.simulate.sensor import mosaic_bayer  # noqa: PLC0415

    return mosaic_bayer(rgb.astype(np.float32) / 255.0, pattern)


def psnr_rgb(result: np.ndarray, truth: np.ndarray, border: int = BORDER) -> float:
    """PSNR (dB) over RGB of ``result`` clipped to [0, 1] against uint8 ``truth``."""
    a = np.clip(np.asarray(result, dtype=np.float64), 0.0, 1.0)[border:-border, border:-border]
    b = truth.astype(np.float64)[border:-border, border:-border] / 255.0
    return float(10.0 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-20)))


def shift_to_phase(pattern: str, native: str) -> tuple[int, int]:
    """(top, left) one-pixel reflect pads that turn a ``pattern`` mosaic into ``native``.

    Reflecting one row (column) shifts the colour-filter phase by one, exactly.
    """
    for top in (0, 1):
        for left in (0, 1):
            shifted = "".join(pattern[2 * ((dy + top) % 2) + (dx + left) % 2]
                              for dy in (0, 1) for dx in (0, 1))
            if shifted == native:
                return top, left
    raise ValueError(f"pattern {pattern!r} cannot be shifted to {native!r}")


# --------------------------------------------------------------------------- methods


def colour_method(name: str) -> Demosaicker:
    """colour-demosaicing's ``demosaicing_CFA_Bayer_<name>`` (bilinear, Malvar2004, Menon2007)."""
    import colour_demosaicing  # noqa: PLC0415 (slow import, only when benchmarked)

    function = getattr(colour_demosaicing, f"demosaicing_CFA_Bayer_{name}")

    def run(mosaic: np.ndarray, pattern: str) -> np.ndarray:
        return np.asarray(function(mosaic.astype(np.float64), pattern), dtype=np.float32)

    return run


def libraw_method(algorithm: str, workdir: Path) -> Demosaicker:
    """LibRaw's ``algorithm`` (AHD, DCB, LINEAR, ...) on a DNG of the mosaic (module notes)."""
    import rawpy  # noqa: PLC0415

    from nnip.raw.dng import write_dng  # noqa: PLC0415
    from nnip.simulate.color import LINEAR_SRGB_FROM_XYZ  # noqa: PLC0415

    def run(mosaic: np.ndarray, pattern: str) -> np.ndarray:
        path = workdir / f"mosaic-{algorithm.lower()}.dng"
        raw16 = np.round(np.clip(mosaic, 0.0, 1.0) * 65535.0).astype(np.uint16)
        write_dng(path, raw16, pattern=pattern, black_level=0, white_level=65535,
                  color_matrix1=LINEAR_SRGB_FROM_XYZ, as_shot_neutral=(1.0, 1.0, 1.0))
        with rawpy.imread(str(path)) as raw:
            rgb = raw.postprocess(
                demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, algorithm),
                output_color=rawpy.ColorSpace.raw, gamma=(1, 1), no_auto_bright=True,
                user_wb=[1.0, 1.0, 1.0, 1.0], output_bps=16, user_flip=0,
                user_black=0, user_sat=65535,
                adjust_maximum_thr=0.0,  # else LibRaw rescales when the data max is near white
            )
        return rgb.astype(np.float32) / 65535.0

    return run


def _import_demosaicnet():
    """``demosaicnet``; its modules ask ``pkg_resources`` (gone from setuptools >= 81) for
    the weights' path, so a minimal stand-in is registered when it is missing."""
    try:
        import pkg_resources  # noqa: F401, PLC0415
    except ImportError:
        import types  # noqa: PLC0415

        shim = types.ModuleType("pkg_resources")
        # pkg_resources resolves ``name`` beside the module file (the module is importing).
        shim.resource_filename = lambda module, name: str(
            Path(sys.modules[module].__file__).parent / name
        )
        sys.modules["pkg_resources"] = shim
    import demosaicnet  # noqa: PLC0415

    return demosaicnet


def demosaicnet_method(threads: int | None) -> Demosaicker:
    """Gharbi et al. 2016 (pretrained Bayer model, torch, CPU): GRBG native (module notes)."""
    import torch  # noqa: PLC0415

    demosaicnet = _import_demosaicnet()
    if threads:
        torch.set_num_threads(threads)
    net = demosaicnet.BayerDemosaick(pretrained=True, pad=False).eval()
    pad = 32  # even (keeps the phase) and beyond the unpadded net's 31-pixel shrinkage

    def run(mosaic: np.ndarray, pattern: str) -> np.ndarray:
        top, left = shift_to_phase(pattern, "GRBG")
        height, width = mosaic.shape
        shifted = np.pad(mosaic, ((top, (top + height) % 2), (left, (left + width) % 2)),
                         mode="reflect")  # native phase, whole cells
        padded = np.pad(shifted, pad, mode="reflect").astype(np.float32)
        planes = demosaicnet.bayer(np.repeat(padded[None], 3, axis=0))  # masked, (3, H, W)
        with torch.no_grad():
            out = net(torch.from_numpy(np.ascontiguousarray(planes))[None])[0].numpy()
        shrink = (padded.shape[0] - out.shape[1]) // 2
        y0, x0 = pad - shrink + top, pad - shrink + left
        crop = out[:, y0:y0 + mosaic.shape[0], x0:x0 + mosaic.shape[1]]
        return np.ascontiguousarray(crop.transpose(1, 2, 0), dtype=np.float32)

    return run


def ours_method(engine: object, spec: object) -> Demosaicker:
    """The model through the develop stage's ``nn_demosaic`` (linear in, linear out)."""
    from nnip.develop.colour import decode_transfer, encode_transfer  # noqa: PLC0415
    from nnip.develop.demosaic import nn_demosaic  # noqa: PLC0415

    def run(mosaic: np.ndarray, pattern: str) -> np.ndarray:
        linear = decode_transfer(mosaic, "srgb")
        rgb = nn_demosaic(linear, pattern, (1.0, 1.0, 1.0), engine, spec)  # type: ignore[arg-type]
        return encode_transfer(rgb, "srgb")

    return run


def baseline_methods(workdir: Path, threads: int | None, names: Sequence[str] | None = None
                     ) -> dict[str, Demosaicker]:
    """The classical and published methods by display name (``names`` filters them)."""
    factories: dict[str, Callable[[], Demosaicker]] = {
        "bilinear": lambda: colour_method("bilinear"),
        "Malvar 2004": lambda: colour_method("Malvar2004"),
        "Menon 2007": lambda: colour_method("Menon2007"),
        "LibRaw bilinear": lambda: libraw_method("LINEAR", workdir),
        "LibRaw AHD": lambda: libraw_method("AHD", workdir),
        "LibRaw DCB": lambda: libraw_method("DCB", workdir),
        "demosaicnet": lambda: demosaicnet_method(threads),
    }
    chosen = factories if names is None else {n: factories[n] for n in names if n in factories}
    return {name: make() for name, make in chosen.items()}


# --------------------------------------------------------------------------- evaluation


@dataclass
class Scores:
    """Mean PSNR per set, seconds per image, and the results (for cross-checks)."""

    psnr: dict[str, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    megapixels: float = 0.0
    results: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def seconds_per_image(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")

    @property
    def seconds_per_mp(self) -> float:
        return float(np.sum(self.seconds)) / self.megapixels if self.megapixels else float("nan")


def evaluate(method: Demosaicker, sets: dict[str, list[tuple[str, np.ndarray]]],
             keep: bool = False) -> Scores:
    """Run ``method`` on every image of ``sets`` through the protocol."""
    scores = Scores()
    for set_name, images in sets.items():
        values, kept = [], []
        for _, truth in images:
            mosaic = protocol_mosaic(truth)
            start = time.perf_counter()
            result = method(mosaic, PATTERN)
            scores.seconds.append(time.perf_counter() - start)
            scores.megapixels += mosaic.size / 1e6
            if result.shape != truth.shape:
                raise ValueError(f"demosaicker returned {result.shape} for {truth.shape}")
            values.append(psnr_rgb(result, truth))
            if keep:
                kept.append(result)
        scores.psnr[set_name] = float(np.mean(values))
        scores.results[set_name] = kept
    return scores


def interleaved_speed(ours: Demosaicker, reference: Demosaicker,
                      sets: dict[str, list[tuple[str, np.ndarray]]], images: int = 8,
                      rounds: int = 3) -> float:
    """Reference seconds over ours on the first ``images`` of each set, timed in turns.

    The quality pass times each method in its own minutes; on a shared virtual machine whose
    speed drifts that alone moved the ratio by 15 % between runs. Here every image is run
    by both methods back to back (order alternating by round) and each method's fastest
    round counts.
    """
    mosaics = [protocol_mosaic(truth) for images_ in sets.values() for _, truth in images_[:images]]
    ours(mosaics[0], PATTERN), reference(mosaics[0], PATTERN)  # warm-up: sessions, caches
    totals = {"ours": [], "reference": []}
    for round_ in range(rounds):
        spent = {"ours": 0.0, "reference": 0.0}
        for mosaic in mosaics:
            order = (("ours", ours), ("reference", reference))
            for key, method in (order if round_ % 2 == 0 else order[::-1]):
                start = time.perf_counter()
                method(mosaic, PATTERN)
                spent[key] += time.perf_counter() - start
        for key, value in spent.items():
            totals[key].append(value)
    return min(totals["reference"]) / min(totals["ours"])


def _row(name: str, scores: Scores, set_names: Sequence[str], reference: str) -> list[object]:
    cells: list[object] = [name]
    cells += [f"{scores.psnr[s]:.2f}" for s in set_names]
    cells += [reference, f"{scores.seconds_per_image * 1000:.0f}", f"{scores.seconds_per_mp:.2f}"]
    return cells


def _reference(name: str, set_names: Sequence[str]) -> str:
    figures = REFERENCE.get(name)
    if figures is None:
        return "-"
    return " / ".join(f"{figures[SETS.index(s)]:.2f}" for s in set_names if s in SETS)


def _path_check(scores: dict[str, Scores], set_names: Sequence[str]) -> str:
    """LibRaw's bilinear against colour-demosaicing's: validates the DNG path."""
    a, b = scores.get("LibRaw bilinear"), scores.get("bilinear")
    if a is None or b is None:
        return ""
    gaps = [abs(a.psnr[s] - b.psnr[s]) for s in set_names]
    worst = max(
        float(np.abs(np.clip(x, 0, 1) - np.clip(y, 0, 1))[BORDER:-BORDER, BORDER:-BORDER].max())
        for s in set_names for x, y in zip(a.results[s], b.results[s])
    )
    verdict = "valid" if max(gaps) <= 0.1 else "NOT VALID"
    return (f"DNG path check: LibRaw bilinear vs colour-demosaicing bilinear differ by at most "
            f"{max(gaps):.3f} dB per set (largest pixel difference {worst * 255:.2f} / 255 "
            f"inside the border): the LibRaw path is {verdict}.")


def _verdicts(ours: dict[str, Scores], baselines: dict[str, Scores],
              speeds: dict[str, float]) -> list[str]:
    lines = []
    for name, scores in ours.items():
        for set_name, bar in zip(SETS, BARS):
            if set_name in scores.psnr:
                value = scores.psnr[set_name]
                lines.append(f"- {name} on {set_name}: {value:.2f} dB, bar >= {bar} dB: "
                             f"{'PASS' if value >= bar else 'FAIL'}")
        if name in speeds:
            speed = speeds[name]
            lines.append(f"- {name} speed: {speed:.2f}x demosaicnet's (the same images timed in "
                         f"turns, fastest of 3 rounds each), bar >= {SPEED_BAR:.0f}x: "
                         f"{'PASS' if speed >= SPEED_BAR else 'FAIL'}")
    return lines


def _costs(specs: Sequence[object]) -> list[str]:
    """Cost per mosaic megapixel: the manifest counts per packed input pixel (4 mosaic pixels).

    The budget printed is ``nnip.train.raw_tasks.DEMOSAIC_GFLOP_BUDGET`` (not imported: this
    script needs no training code).
    """
    lines = []
    for spec in specs:
        packed = float(spec.gflop_per_mp)  # type: ignore[attr-defined]
        lines.append(f"- {spec.name}: {packed / 4:.1f} GFLOP per mosaic megapixel (budget 160; "  # type: ignore[attr-defined]
                     f"the manifest's {packed:.0f} is per packed input MP)")
    return lines


def _method_names(text: str | None) -> list[str] | None:
    """``--methods``: None for every baseline, else the names given ('none': no baseline)."""
    if text is None:
        return None
    return [m for m in text.split(",") if m and m != "none"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser, models="demosaic")
    parser.add_argument("--bench", type=Path, default=None,
                        help="folder holding Kodak24/ and McMaster/ (default ../shared/data/bench)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=None,
                        help="comma-separated baselines (default: all; 'none' for none)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N images of each set (a quick check, e.g. of an "
                        "int8 variant: --models demosaic-int8 --models-dir DIR)")
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 2

    bench = args.bench or shared_path("data", "bench")
    set_names = [s for s in args.sets.split(",") if s]
    if bench is None or any(not (bench / s).is_dir() for s in set_names):
        print(f"error: benchmark folders {', '.join(set_names)} not found under "
              f"{bench or '../shared/data/bench'}", file=sys.stderr)
        return 2
    sets = {s: load_set(bench / s)[: args.limit] for s in set_names}
    names = _method_names(args.methods)

    engine, specs = load_models(args, task="demosaic")
    ours_methods = {f"**{spec.name}** (ours)": ours_method(engine, spec) for spec in specs}
    ours = {name: evaluate(method, sets) for name, method in ours_methods.items()}
    with tempfile.TemporaryDirectory(prefix="nnip-demosaic-") as tmp:
        methods = baseline_methods(Path(tmp), args.threads, names)
        baselines = {name: evaluate(method, sets, keep=name.endswith("bilinear"))
                     for name, method in methods.items()}
        speeds = {}
        if "demosaicnet" in methods:
            speeds = {name: interleaved_speed(method, methods["demosaicnet"], sets)
                      for name, method in ours_methods.items()}

    headers = ["method", *(f"{s} dB" for s in set_names), "README reference (same protocol)",
               "ms per image", "s per MP"]
    rows = [_row(name, scores, set_names, "-") for name, scores in ours.items()]
    rows += [_row(name, scores, set_names, _reference(name, set_names))
             for name, scores in baselines.items()]
    body = [
        f"GRBG mosaic of the 8-bit sRGB values, PSNR over RGB, {BORDER}-pixel border excluded, "
        f"mean over {f'the first {args.limit} images' if args.limit else 'images'}; times on this "
        f"CPU with {args.threads} threads (onnxruntime for "
        f"ours, torch for demosaicnet).",
        "",
        markdown_table(headers, rows),
        "",
        _path_check(baselines, set_names),
        "",
        *_verdicts(ours, baselines, speeds),
        *_costs(specs),
    ]
    section = Section(
        name="demosaic_quality",
        title="Demosaicking quality: Kodak24 and McMaster (literature protocol)",
        body="\n".join(body),
        models=[describe_model(spec) for spec in specs],
        argv=argv,
    )
    publish(section, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
