"""Combined develop: denoise, neural demosaic and lens correction alone, in pairs and together.

The white paper's section 1.4 claim (issue 7): on RAWs that are both noisy and blurred, the
three neural stages together measure best.

Protocol. Each clean image of Kodak24 and McMaster (8-bit sRGB, optionally the centre
``--crop`` square, which is then the whole frame: field radius 1 at its corners) is a scene
seen through the Canon EOS 5D Mark III colour matrix under D65 at 0 EV, through the ``f/16``
lens of ``benchmarks/lens_quality.py`` (diffraction: Airy first-zero radius 2.7 px at
550 nm, 4.0 um pixels) PLUS the peripheral aberration of its ``f/2`` lens (elliptical blur
growing as rho^2, sigma 2.5 px radially and 1.25 px tangentially at the corners; no lateral
CA), no OLPF, RGGB, with the Poisson-Gaussian noise of the ``sony-a7rm2`` sensor model at
ISO 3200, 14 bits: :func:`lens_quality.render_dngs`. The DNG states what a user's file
states: the true NoiseProfile, and in EXIF the f-number, the focal length and the
focal-plane resolution (the pixel pitch), so every stage takes its parameters from the
file, as ``nnip develop`` does (the section prints what the stages read).

Each variant is one call of the real pipeline (:func:`nnip.develop.pipeline.develop`, as
``nnip develop`` runs it, as-shot WB, camera matrix, sRGB, clip, 0 EV) with:

- denoise: ``off`` | ``auto`` (the ``denoise`` model, noise from the NoiseProfile);
- demosaic: ``ahd`` (LibRaw's AHD, "off") | ``nn`` (the ``demosaic`` model, "on");
- lens: ``off`` | ``deblur`` (the lateral-CA stage on the mosaic, which should find none
  here, then the ``lens`` model, optics map from the EXIF; no lensfun profile: the
  simulated lens has no distortion or vignetting),

all 8 combinations: none, each stage alone, each pair, all three. The reference is the
*clean rendering* of ``lens_quality.py``: the sharp scene's capture without lens and
noise, developed with the variant's own demosaic (``nn`` when the variant uses the demosaic
stage, AHD otherwise) and nothing else, so each figure measures what is left of the noise
and the blur, not demosaicking or colour. Compared as sRGB in [0, 1]: PSNR over R, G, B and
SSIM (Gaussian 11 x 11, sigma 1.5) over the whole image (8 px border off), the centre and
the corners (``lens_quality.zone_scores``). Seconds: the ``develop`` call per image (file
reading and writing excluded), on this machine as it was.

Order. The pipeline runs denoise -> lateral CA -> demosaic -> lens, in one pass per image. The denoiser
needs the raw mosaic, where the noise is still the sensor's Poisson-Gaussian noise of the
NoiseProfile, pixel by pixel independent; demosaicking correlates it and mixes channels.
The lens network works on demosaicked RGB (its field-varying blur and lateral colour act
across channels), so it cannot come before demosaicking; and a deblur amplifies noise, so
it runs on the denoised image. "Lens before denoise" is therefore not a variant: it is
impossible in this pipeline, not merely worse.

Verdict: all three together must have the best whole-image PSNR of the 8 (pass / FAIL).

    python benchmarks/develop_combined.py --images 1 --crop 256                # quick run
    python benchmarks/develop_combined.py --results benchmarks/RESULTS.md      # full run
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from common import Section, add_common_options, describe_model, markdown_table, publish
from denoise_quality import _images as bench_images
from denoise_quality import load_clean, psnr, ssim
from lens_quality import CONDITIONS, PITCH_UM, render_dngs, zone_scores

__all__ = ["ISO", "LENS", "STAGES", "Variant", "VARIANTS", "main"]

ISO = 3200
#: The f/16 lens with the f/2 lens's peripheral aberration (LensParams keyword arguments).
LENS = dict(CONDITIONS["f/16"], aberration_px=CONDITIONS["f/2"]["aberration_px"])
#: The neural stages, in pipeline order; each is also the model task it needs.
STAGES = ("denoise", "demosaic", "lens")
ZONES = ("whole", "centre", "corners")


@dataclasses.dataclass(frozen=True)
class Variant:
    """Which neural stages are on (the others: denoise off, LibRaw AHD, lens off)."""

    on: frozenset[str]

    @property
    def name(self) -> str:
        return " + ".join(s for s in STAGES if s in self.on) or "none"

    @property
    def demosaic(self) -> str:
        return "nn" if "demosaic" in self.on else "ahd"

    def options(self, specs: dict[str, object | None]):
        """The DevelopOptions a user would give for this variant (models as resolved)."""
        from nnip.develop.pipeline import DevelopOptions

        def model(task: str) -> str | None:
            spec = specs.get(task)
            return spec.name if spec is not None else None  # type: ignore[attr-defined]

        return DevelopOptions(
            demosaic=self.demosaic, denoise="auto" if "denoise" in self.on else "off",
            lens="deblur" if "lens" in self.on else "off", demosaic_model=model("demosaic"),
            denoise_model=model("denoise"), lens_model=model("lens"),
        )


def _all_variants() -> tuple[Variant, ...]:
    """None, each stage alone, each pair, all three (stages in pipeline order within each)."""
    subsets = [frozenset(c) for k in range(len(STAGES) + 1)
               for c in itertools.combinations(STAGES, k)]
    return tuple(Variant(s) for s in subsets)


VARIANTS = _all_variants()
ALL = VARIANTS[-1]


@dataclasses.dataclass
class Tally:
    """Per-image scores of one variant: {zone: [(PSNR, SSIM), ...]} and seconds."""

    scores: dict[str, list[tuple[float, float]]] = dataclasses.field(
        default_factory=lambda: {zone: [] for zone in ZONES})
    seconds: list[float] = dataclasses.field(default_factory=list)

    def add(self, srgb: np.ndarray, reference: np.ndarray, seconds: float) -> None:
        self.scores["whole"].append((psnr(srgb, reference), ssim(srgb, reference)))
        for zone, value in zone_scores(srgb, reference).items():
            self.scores[zone].append(value)
        self.seconds.append(seconds)

    def mean(self, zone: str) -> tuple[float, float]:
        values = np.array(self.scores[zone])
        return float(values[:, 0].mean()), float(values[:, 1].mean())


# --------------------------------------------------------------------------- models


def _models(args) -> tuple[object | None, object | None, dict[str, object | None]]:
    """Engine, registry and the model each neural stage uses (None: not installed).

    ``--models`` may name models (``denoise-fast,lens-fast``); a stage none of them serves
    takes the first installed model of its task, as ``nnip develop`` does.
    """
    from nnip.core.engine import Engine
    from nnip.core.errors import ModelError
    from nnip.core.models import Registry

    try:
        registry = Registry(args.models_dir)
    except ModelError as exc:
        print(f"note: no models ({exc}); only the variant 'none' runs", file=sys.stderr)
        return None, None, {task: None for task in STAGES}
    names = [n for n in args.models.split(",") if n]
    specs: dict[str, object | None] = {}
    for task in STAGES:
        specs[task] = None
        for name in [*names, None]:
            try:
                specs[task] = registry.find(task, name)
                break
            except ModelError as exc:
                if name is None:
                    print(f"note: {task}: {exc}", file=sys.stderr)
    return Engine(args.device, threads=args.threads, registry=registry), registry, specs


def _runnable(specs: dict[str, object | None]) -> list[Variant]:
    return [v for v in VARIANTS if all(specs[task] is not None for task in v.on)]


# --------------------------------------------------------------------------- measuring


def measure(args, images: list[tuple[str, Path]], engine, registry, specs,
            folder: Path) -> tuple[dict[str, Tally], list[str]]:
    """Every runnable variant on every image; the tallies and what the stages read."""
    from nnip.develop.optics import optics_for_frame
    from nnip.develop.pipeline import develop
    from nnip.raw.frame import read_raw
    from nnip.simulate.optics import LensParams

    lens = LensParams(pixel_pitch_um=PITCH_UM, **LENS)
    variants = _runnable(specs)
    tallies: dict[str, Tally] = {v.name: Tally() for v in variants}
    seen: dict[str, str] = {}
    for index, (set_name, path) in enumerate(images):
        start = time.perf_counter()
        scene = load_clean(path, args.crop)
        noisy_path, clean_path, _ = render_dngs(scene, lens, ISO, folder, index, "combined")
        noisy, clean = read_raw(noisy_path), read_raw(clean_path)
        seen.setdefault("optics", optics_for_frame(noisy).describe())
        references: dict[str, np.ndarray] = {}
        for variant in variants:
            options = dataclasses.replace(variant.options(specs), tile=args.tile)
            if variant.demosaic not in references:  # the clean capture, demosaic only
                plain = dataclasses.replace(options, denoise="off", lens="off")
                references[variant.demosaic] = develop(clean, plain, engine, registry)[0]
            began = time.perf_counter()
            srgb, meta = develop(noisy, options, engine, registry)
            tallies[variant.name].add(srgb, references[variant.demosaic],
                                      time.perf_counter() - began)
            if "noise" in meta:
                seen.setdefault("noise", meta["noise"]["text"])
            for notice in meta["notices"]:
                seen.setdefault(f"notice {notice}", notice)
        print(f"  {set_name}/{path.name}: " + ", ".join(
            f"{name} {t.scores['whole'][-1][0]:.2f}" for name, t in tallies.items())
            + f" dB ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    return tallies, list(seen.values())


# --------------------------------------------------------------------------- reporting


def table(tallies: dict[str, Tally], specs: dict[str, object | None]) -> str:
    rows = []
    for variant in VARIANTS:
        tally = tallies.get(variant.name)
        if tally is None or not tally.seconds:
            missing = ", ".join(t for t in STAGES if t in variant.on and specs[t] is None)
            rows.append([variant.name] + [f"not installed ({missing})"] + ["-"] * 6)
            continue
        cells = [f"{value:.{digits}f}" for zone in ZONES
                 for value, digits in zip(tally.mean(zone), (2, 4))]
        rows.append([variant.name, *cells, f"{np.mean(tally.seconds):.2f}"])
    return markdown_table(["variant", "PSNR whole", "SSIM whole", "PSNR centre", "SSIM centre",
                           "PSNR corners", "SSIM corners", "s/img"], rows)


def verdict(tallies: dict[str, Tally]) -> str:
    """All three best (whole PSNR) among all 8 variants: pass / FAIL; else not judged."""
    measured = {name: t.mean("whole")[0] for name, t in tallies.items() if t.seconds}
    if len(measured) < len(VARIANTS):
        return ("Verdict: not judged (not every stage has a model installed, so not all "
                f"{len(VARIANTS)} variants ran).")
    ranked = sorted(measured, key=lambda name: measured[name], reverse=True)
    best = ranked[0]
    runner_up = next(name for name in ranked if name != ALL.name)
    margin = measured[ALL.name] - measured[runner_up]
    return (f"Verdict (all three best in whole-image PSNR): best is '{best}'; "
            f"'{ALL.name}' - '{runner_up}' = {margin:+.2f} dB: "
            + ("pass" if best == ALL.name else "FAIL"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser, models="")
    parser.add_argument("--images", type=int, default=0, help="first N images of each set (0: all)")
    parser.add_argument("--crop", type=int, default=0, help="centre crop side in pixels (0: whole)")
    parser.add_argument("--tile", type=int, default=None, help="engine tile for the networks")
    args = parser.parse_args(argv)
    images = bench_images(args)
    if not images:
        print("note: no benchmark images (../shared/data/bench); nothing measured",
              file=sys.stderr)
        return 0
    started = time.perf_counter()
    engine, registry, specs = _models(args)
    with tempfile.TemporaryDirectory(prefix="nnip-combined-") as tmp:
        tallies, seen = measure(args, images, engine, registry, specs, Path(tmp))
    sets = ", ".join(dict.fromkeys(s for s, _ in images))
    crop = f", centre crops of {args.crop} px" if args.crop else ""
    body = "\n\n".join([
        f"{len(images)} images ({sets}{crop}) at ISO {ISO}, f/16 + peripheral aberration "
        f"(sigma {LENS['aberration_px']:g} px at the corners); PSNR dB / SSIM against the clean "
        "rendering of the variant's own demosaic; seconds: the develop call per image.",
        "What the DNG states, as the stages read it: " + "; ".join(seen) + ".",
        table(tallies, specs),
        verdict(tallies),
        f"Run time {time.perf_counter() - started:.0f} s.",
    ])
    models = [f"{task}: {describe_model(spec)}" if spec is not None else f"{task}: not installed"
              for task, spec in specs.items()]
    publish(Section("develop_combined",
                    "Combined develop: denoise, demosaic and lens alone, in pairs, together "
                    "(issue 7)", body, models, argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
