"""int8 screen of the models int8_variants.py has no benchmark harness for (denoise, lens).

For each model and quantisation setting, ``nnip.train.quantize.quantize_file`` makes an int8
(QDQ) copy, calibrated on batches of the model's own training stream (the task's
``build_data``: the same simulation that trained it, seeded; training images only). Then:

- quality: the task's held-out validation crops (the images its training split holds out,
  simulated at fixed conditions; never trained on), scored by the task's own metric
  (``task.evaluate``: denoise, PSNR of the sRGB-encoded packed mosaic; lens, PSNR of the
  encoded RGB), fp32 and int8 through onnxruntime on the same crops;
- speed: one session.run on a ``--size`` square, fp32 and int8 in turns, best of
  ``--repeats``, 2 threads.

``--configs`` takes other settings (``k=v,k=v;k=v``, QuantizeOptions fields, as in
int8_variants.py), e.g. ``float_nodes`` patterns to find which tensors cost the quality;
``file=PATH`` screens an int8 file made elsewhere (``{name}`` in it is the model's name:
``file=onnx_models/{name}-int8.onnx`` is each model's installed variant) instead of
quantising the model again.

This is a screen, not the issue's benchmark: a setting that drops more than 0.05 dB here
would not ship; one that passes would next go through the task's benchmark
(benchmarks/denoise_quality.py, lens_quality.py) before shipping.

    python benchmarks/int8_screen.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common import REPO, Section, best_in_turns, describe_model, markdown_table, publish
from int8_variants import parse_configs

BAR_DB = 0.05
DEFAULT_CONFIGS = ";".join(f"float_convs={n},calibration=percentile" for n in (1, 2, 3))


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def task_data(spec: Any) -> tuple[Any, Any]:
    """The training task of ``spec`` and its data (training stream and held-out validation
    crops), built from the run config and training folders in the model's provenance."""
    from nnip.train.tasks import get_task, run_config  # noqa: PLC0415

    task = get_task(spec.task)
    config = run_config(spec.provenance["config"])
    dirs = [Path(p) for p in spec.provenance.get("data", []) if Path(p).is_dir()]
    if not dirs:
        raise FileNotFoundError(f"{spec.name}: none of its training folders exists")
    return task, task.build_data(config, dirs, REPO / "runs" / "cache" / "teachers", 0)


def _calibration(data: Any, samples: int) -> list[list[np.ndarray]]:
    """``samples`` input lists from the task's training stream (its batches split up)."""
    feeds: list[list[np.ndarray]] = []
    for inputs, _ in data.train:
        arrays = [t.numpy() for t in (inputs if isinstance(inputs, (tuple, list)) else [inputs])]
        feeds += [[a[i] for a in arrays] for i in range(arrays[0].shape[0])]
        if len(feeds) >= samples:
            return feeds[:samples]
    return feeds


def _val_score(session: Any, task: Any, val: Sequence) -> float:
    names = [i.name for i in session.get_inputs()]
    scores = []
    for inputs, target in val:
        feed = {n: np.ascontiguousarray(a, dtype=np.float32)[None] for n, a in zip(names, inputs)}
        scores.append(task.evaluate(session.run(None, feed)[0][0], target))
    return float(np.mean(scores))


def _speed(sessions: Sequence[Any], size: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(0)
    feeds = [{i.name: rng.random((1, i.shape[1], size, size), dtype=np.float32)
              for i in session.get_inputs()} for session in sessions]
    return best_in_turns(list(zip(sessions, feeds)), repeats)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="denoise,lens")
    parser.add_argument("--samples", type=int, default=64, help="calibration inputs")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help="quantisation settings, k=v,k=v;k=v (QuantizeOptions fields)")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)

    from nnip.core.models import Registry  # noqa: PLC0415
    from nnip.train.quantize import QuantizeOptions, quantize_file  # noqa: PLC0415

    registry = Registry()
    rows, described = [], []
    with tempfile.TemporaryDirectory(prefix="nnip-int8-screen-") as tmp:
        for name in args.models.split(","):
            spec = registry.get(name)
            described.append(describe_model(spec))
            task, data = task_data(spec)
            feeds = _calibration(data, args.samples)
            source = registry.load(spec)
            fp32 = _session(source, args.threads)
            base = _val_score(fp32, task, data.val)
            rows.append([name, "fp32 (shipped)", "-", f"{base:.3f} dB on {len(data.val)} crops", "-", "-", "-"])
            for config_kw in parse_configs(args.configs):
                made = config_kw.get("file")  # an int8 file made elsewhere: screen it as it is
                options = QuantizeOptions(**{k: v for k, v in config_kw.items() if k != "file"})
                target = Path(made.format(name=name)) if made else Path(tmp) / f"{name}-{len(rows)}.onnx"
                if not made:
                    quantize_file(source, target, feeds, options)
                int8 = _session(target, args.threads)
                drop = _val_score(int8, task, data.val) - base
                fp32_s, int8_s = _speed([fp32, int8], args.size, args.repeats)
                ships = drop >= -BAR_DB and int8_s < fp32_s
                setting = ", ".join(f"{k}={v}" for k, v in config_kw.items())
                rows.append([name, setting.replace("|", "\\|"),  # float_nodes' '|' in a table cell
                             "as made" if made else str(options.float_convs), f"{drop:+.3f} dB",
                             f"{1000 * fp32_s:.0f} / {1000 * int8_s:.0f}", f"{fp32_s / int8_s:.2f}x",
                             "passes the screen" if ships else "does not ship"])
                print(f"{name} [{setting}]: {drop:+.3f} dB, {fp32_s / int8_s:.2f}x", flush=True)
    body = "\n".join([
        f"Calibration: {args.samples} inputs from each model's own training stream (seeded, "
        "training images only). Quality: the task's held-out validation crops and metric, "
        f"fp32 and int8 through onnxruntime. Speed: session.run on {args.size}x{args.size}, "
        f"{args.threads} threads, best of {args.repeats}, in turns. Screen bar: within "
        f"{BAR_DB} dB and faster.", "",
        markdown_table(["model", "int8 setting", "float convs at each end", "quality (fp32: dB; int8: change)",
                        "session.run ms fp32 / int8", "speed-up", "verdict"], rows),
    ])
    publish(Section("int8_screen", "int8 screen: denoise and lens on their held-out crops", body,
                    models=described, argv=argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
