"""int8 variants of the shipped models: benchmark quality lost and session.run speed gained.

For each model and each quantisation setting (``--configs``), ``nnip.train.quantize``
writes the int8 variant into a scratch models directory (calibrated on training crops,
never on benchmark images; a setting ``weights=PATH`` quantises a quantisation-aware
fine-tune of the model, ``nnip.train.qat``, with its trained ranges), then:

- quality: the task's own benchmark harness on the fp32 model and on the variant, same
  images: ``sr_quality`` (Set5, Set14; the network alone and with the fidelity step, as
  ``nnups upscale`` runs it) or ``demosaic_quality`` (Kodak24, McMaster, through the develop
  stage's ``nn_demosaic``) and ``develop_end_to_end`` (Kodak24 as simulated DNGs through
  the whole ``nnip develop``, whose camera colour matrix amplifies the network's errors,
  rounding noise included: a demosaic variant that passes the first lost 3x as much here);
- speed: one whole-image ``session.run`` on a ``--size`` square, best of ``--repeats``,
  fp32 and int8 alternately, ``--threads`` threads.

The bar to ship a variant: no set drops by more than 0.05 dB (every row), and it is
faster. A variant that passes is shipped by running the same quantisation into
``onnx_models/`` (the command is printed); the fp32 model stays beside it, and
``--precision auto`` (the default) runs the variant only on a CPU with int8 dot-product
instructions (VNNI and kin).

    python benchmarks/int8_variants.py --results benchmarks/RESULTS.md           # the figures
    python benchmarks/int8_variants.py --limit 4 --size 256 --configs float_convs=1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from common import Section, best_in_turns, describe_model, markdown_table, publish, shared_path

BAR_DB = 0.05
DEFAULT_CONFIGS = ("float_convs=1,calibration=percentile;float_convs=1,calibration=entropy;"
                   "float_convs=2,calibration=percentile")


#: Config keys that are quantize_model's arguments, not QuantizeOptions fields: ``weights``
#: (a quantisation-aware fine-tune's float ONNX, nnip.train.qat) and ``recalibrate``.
_NOT_OPTIONS = ("weights", "recalibrate")


def parse_configs(text: str) -> list[dict[str, Any]]:
    """``k=v,k=v;k=v`` -> QuantizeOptions keyword dicts (numbers converted)."""
    configs = []
    for part in filter(None, text.split(";")):
        config: dict[str, Any] = {}
        for pair in filter(None, part.split(",")):
            key, _, value = pair.partition("=")
            for kind in (int, float):
                try:
                    config[key.strip()] = kind(value)
                    break
                except ValueError:
                    continue
            else:
                config[key.strip()] = {"true": True, "false": False}.get(value.lower(), value)
        configs.append(config)
    return configs


def quantize_flags(config: dict[str, Any]) -> str:
    """The ``python -m nnip.train.quantize`` options that give ``config``."""
    flags = []
    for key, value in config.items():
        if key == "symmetric":
            flags += ["--symmetric"] if value else []
        elif key == "per_channel":
            flags += [] if value else ["--per-tensor"]
        elif key == "recalibrate":
            flags += ["--recalibrate"] if value else []
        else:
            flags.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(flags)


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "defaults"


def upscale_quality(engine: Any, spec: Any, bench: Path, limit: int | None,
                    _models_dir: Path) -> dict[str, float]:
    """Mean Y-PSNR per set, network alone and with the fidelity step (``sr_quality``)."""
    import sr_quality as sq  # noqa: PLC0415

    sets = {s: [sq.load_hr(p) for p in sorted((bench / s).glob("*.png"))][:limit] for s in sq.SETS}
    network = sq.evaluate(sq.model_upscaler(engine, spec), sets).psnr
    command = sq.evaluate(sq.command_upscaler(engine, spec), sets).psnr
    return {**{f"{s} network": v for s, v in network.items()},
            **{f"{s} + fidelity": v for s, v in command.items()}}


def demosaic_quality(engine: Any, spec: Any, bench: Path, limit: int | None,
                     models_dir: Path) -> dict[str, float]:
    """Mean RGB PSNR per set (``demosaic_quality``'s protocol), and of the whole develop
    (``develop_end_to_end``, ``spec`` run from ``models_dir`` in its own precision)."""
    import demosaic_quality as dq  # noqa: PLC0415
    from develop_end_to_end import nn_mean_psnr  # noqa: PLC0415

    sets = {s: dq.load_set(bench / s)[:limit] for s in dq.SETS}
    scores = dq.evaluate(dq.ours_method(engine, spec), sets).psnr
    scores["develop end to end"] = nn_mean_psnr(models_dir, spec.precision, limit)
    return scores


QUALITY: dict[str, Callable[[Any, Any, Path, int | None, Path], dict[str, float]]] = {
    "upscale": upscale_quality,
    "demosaic": demosaic_quality,
}


def alternating_seconds(engine: Any, specs: Sequence[Any], size: int, repeats: int) -> list[float]:
    """Best session.run seconds of each spec, measured in turns (so load drifts hit all)."""
    from gflops import _feed, _random_inputs  # noqa: PLC0415

    runs = []
    for spec in specs:
        session = engine.session(spec)
        runs.append((session, _feed(session, spec, _random_inputs(spec, size))))
    return best_in_turns(runs, repeats)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="upscale-fast,demosaic")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help="';'-separated quantisation settings, each 'key=value,...' of "
                        "nnip.train.quantize.QuantizeOptions")
    parser.add_argument("--bench", type=Path, default=None, help="default ../shared/data/bench")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N images of each set (a quick check)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)

    from nnip.core.engine import Engine  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415
    from nnip.train.quantize import QuantizeOptions, quantize_model  # noqa: PLC0415

    bench = args.bench or shared_path("data", "bench")
    if bench is None:
        print("error: no benchmark images (../shared/data/bench)", file=sys.stderr)
        return 2
    configs = parse_configs(args.configs)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    rows, described, passing = [], [], []
    with tempfile.TemporaryDirectory(prefix="nnip-int8-") as tmp:
        for name in args.models.split(","):
            registry = Registry(args.models_dir)
            spec = registry.get(name)
            measure = QUALITY[spec.task]
            engine = Engine("cpu", threads=args.threads, registry=registry)
            reference = measure(engine, spec, bench, args.limit, registry.models_dir)
            described.append(describe_model(spec))
            rows.append([name, "fp32 (shipped)", "-", "-",
                         ", ".join(f"{k} {v:.2f}" for k, v in reference.items()), "-", "-", "-"])
            for i, config in enumerate(configs):
                out = Path(tmp) / f"{name}-{i}"
                options = {k: v for k, v in config.items() if k not in _NOT_OPTIONS}
                variant = quantize_model(name, args.models_dir, out, QuantizeOptions(**options),
                                         weights=config.get("weights"),
                                         use_trained_ranges=not config.get("recalibrate", False))
                scratch = Registry(out)
                engine = Engine("cpu", threads=args.threads, registry=scratch)
                scores = measure(engine, variant, bench, args.limit, out)
                drops = {k: reference[k] - v for k, v in scores.items()}
                fp32, int8 = alternating_seconds(engine, [scratch.get(name), variant],
                                                 args.size, args.repeats)
                ok = max(drops.values()) <= BAR_DB and int8 < fp32
                if ok:
                    passing.append((name, config))
                rows.append([
                    name, _config_text(config),
                    str(len(variant.provenance["quantization"]["float_nodes"])),
                    f"{variant.metrics['int8_vs_fp32_psnr_db']:.1f}",
                    ", ".join(f"{k} {-d:+.3f}" for k, d in drops.items()),
                    f"{fp32 * 1000:.0f} / {int8 * 1000:.0f}", f"{fp32 / int8:.2f}x",
                    "ships" if ok else "does not ship",
                ])
                print(f"{name} [{_config_text(config)}]: worst drop {max(drops.values()):.3f} dB, "
                      f"speed {fp32 / int8:.2f}x", flush=True)

    images = f"the first {args.limit} images of each set" if args.limit else "every image"
    body = [
        f"Calibration: training crops only (``nnip.train.quantize``: QDQ, uint8 activations, "
        f"int8 per-channel weights). Quality on {images} of the task's benchmark (fp32 row: "
        f"dB; variant rows: change in dB). Speed: one session.run on {args.size}x{args.size}, "
        f"{args.threads} threads, best of {args.repeats}, fp32 and int8 in turns; load average "
        f"before: {load} (speed only valid on an idle machine). Bar: every set within "
        f"{BAR_DB} dB and faster.",
        "",
        markdown_table(["model", "int8 setting", "float nodes", "int8 vs fp32 on training crops, dB",
                        "quality (fp32: dB; int8: change)", "session.run ms fp32 / int8",
                        "speed-up", "verdict"], rows),
        "",
    ]
    if passing:
        subset = " (on a subset: confirm on every image first)" if args.limit else ""
        body += [f"Variants that pass{subset}, shipped with:", ""]
        for name, config in passing:
            body.append(f"    python -m nnip.train.quantize {name} {quantize_flags(config)}")
    else:
        body.append("No variant passes: the fp32 models stay the only shipped ones.")
    publish(Section("int8_variants", "int8 variants: quality lost, speed gained",
                    "\n".join(body), models=described, argv=argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
