"""Command line of the training entry point (argparse: the training extra needs no click).

Example::

    nohup python -m nnip.train upscale --config fast --minutes 100 --threads 2 \\
        --out runs/upscale-fast > runs/upscale-fast/log.txt 2>&1 &
    python -m nnip.train upscale --config fast --minutes 60 --resume --out runs/upscale-fast
    python -m nnip.train.export runs/upscale-fast --name upscale-fast
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["build_parser", "main", "parse_overrides"]

_REPO = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nnip.train",
        description="Train a network for a time budget; resumable; optionally export it.",
    )
    parser.add_argument("task", help="task to train (upscale; raw tasks plug into nnip.train.tasks)")
    parser.add_argument("--config", help="variant name (fast, quality) or a JSON file")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-time budget (default 60)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workers", type=int, default=1,
                        help="data worker processes (default 1; more on a GPU machine, where "
                             "the simulation, not the network, limits the step rate)")
    parser.add_argument("--new-cycle", action="store_true",
                        help="on --resume, start a fresh learning-rate cycle at the config's lr "
                             "(with --set lr=...) instead of finishing the run's current one")
    parser.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                        help="start a fresh run from this checkpoint's weights and config "
                             "(fine-tuning, e.g. with --set for changed data); a run OUT "
                             "can --resume is resumed instead")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training knob (batch, lr, ...), also on --resume, where "
                             "the run's own config otherwise wins; VALUE is read as JSON")
    parser.add_argument("--data", nargs="+", type=Path, help="training image folders "
                        "(default: the task's folders under ../shared/data/train)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/TASK)")
    parser.add_argument("--cache", type=Path, default=_REPO / "runs" / "cache" / "teachers",
                        help="teacher cache (default runs/cache/teachers)")
    parser.add_argument("--export", metavar="NAME",
                        help="after training, export best.pt as model NAME into onnx_models/")
    parser.add_argument("--max-steps", type=int, help=argparse.SUPPRESS)
    return parser


def parse_overrides(items: Sequence[str], config: dict) -> dict:
    """``["batch=32", "lr=3e-4"]`` -> ``{"batch": 32, "lr": 0.0003}``; only the config's own keys.

    Raises
    ------
    ValueError
        An item without ``=``, or a key the task's config does not have.
    """
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in config:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(config))}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    # Heavy imports after parsing, so --help is instant.
    from nnip.train.loop import RunOptions, train  # noqa: PLC0415
    from nnip.train.tasks import default_data_dirs, get_task, load_config  # noqa: PLC0415

    try:
        task = get_task(args.task)
        config = load_config(task, args.config)
        overrides = parse_overrides(args.overrides, config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_dirs = args.data or default_data_dirs(task)
    missing = [str(d) for d in data_dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: data folder(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    command = "python -m nnip.train " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    options = RunOptions(
        out=args.out or _REPO / "runs" / args.task,
        minutes=args.minutes,
        resume=args.resume,
        device=args.device,
        threads=args.threads,
        workers=args.workers,
        new_cycle=args.new_cycle,
        overrides=overrides,
        init=args.init,
        data_dirs=data_dirs,
        cache_dir=args.cache,
        command=command,
        max_steps=args.max_steps,
    )
    best = train(task, config, options)
    if args.export:
        from nnip.train.export import export_checkpoint  # noqa: PLC0415

        entry = export_checkpoint(best, args.export)
        print(f"exported {entry.name} -> {entry.path}")
    return 0
