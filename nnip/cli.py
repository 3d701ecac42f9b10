"""``nnip``: develop camera RAW files with neural networks.

``nnip develop IMG_0001.CR3`` writes ``IMG_0001_nnip.tif`` beside it; ``nnip models`` lists
every installed model. The command validates its options, resolves the models directory
and the device once, then hands every file to the batch runner. The per-file work is
``nnip.develop.process_file``; until that pipeline is installed, each file fails with the
registry's own message for the first model it would need (e.g. ``x.dng: no model for task
'demosaic' installed in ...``), or says the pipeline is missing.

Heavy imports happen inside the commands, so ``nnip --help`` is instant.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from nnip.options import (
    batch_options,
    batch_opts,
    bits_opt,
    collect_and_check,
    engine_opts,
    execute_batch,
    format_opt,
    inputs_arg,
    json_opt,
    models_dir_opt,
    reporting_errors,
    run_main,
    show_models,
    suffix_opt,
    version_opt,
)

__all__ = [
    "cli",
    "main",
    "OUTPUT_FORMATS",
    "EXTENSION_OF_FORMAT",
    "COLORSPACES",
    "DEMOSAIC_METHODS",
    "WB_PRESETS",
    "RAW_EXTENSIONS",
]

PROG = "nnip"

OUTPUT_FORMATS = ("tiff", "jpeg", "png", "dng")
EXTENSION_OF_FORMAT = {"tiff": "tif", "jpeg": "jpg", "png": "png", "dng": "dng"}
COLORSPACES = ("srgb", "display-p3", "adobe-rgb", "prophoto", "linear-srgb")
#: ``nn`` is the network; the others are LibRaw's classic demosaickers.
DEMOSAIC_METHODS = ("nn", "ahd", "dcb", "vng", "ppg", "bilinear")
#: ``camera`` is the white balance recorded by the camera (as shot).
WB_PRESETS = ("camera", "auto", "daylight", "cloudy", "shade", "tungsten", "fluorescent", "flash")
#: Extensions a directory walk (``--recursive``) picks up; explicit files are always tried.
RAW_EXTENSIONS = (
    ".cr3", ".cr2", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".rw2", ".orf",
    ".pef", ".dng", ".srw", ".x3f", ".3fr", ".iiq", ".kdc", ".dcr", ".mrw", ".erf", ".mos",
    ".rwl", ".raw",
)  # fmt: skip

_KELVIN = re.compile(r"^(\d{4,5})k$")


def _parse_wb(ctx: click.Context, param: click.Parameter, value: str) -> str | int:
    """A preset name, or a colour temperature such as ``5500K`` (returned as int kelvin)."""
    text = value.strip().lower()
    if text in WB_PRESETS:
        return text
    match = _KELVIN.match(text)
    if match and 2000 <= int(match.group(1)) <= 12000:
        return int(match.group(1))
    raise click.BadParameter(
        f"{value!r} is not one of {', '.join(WB_PRESETS)} or a temperature 2000K..12000K",
        ctx,
        param,
    )


@click.group(name=PROG, context_settings={"help_option_names": ["-h", "--help"]})
@version_opt(PROG)
def cli() -> None:
    """Neural network RAW development: RAW in, finished image out."""


@cli.command()
@models_dir_opt
@json_opt
@click.pass_context
def models(ctx: click.Context, models_dir: Path | None, as_json: bool) -> None:
    """List every installed model (all tasks)."""
    show_models(ctx, models_dir, None, as_json)


@cli.command()
@inputs_arg
@format_opt(OUTPUT_FORMATS, "tiff")
@bits_opt
@click.option(
    "--colorspace",
    type=click.Choice(COLORSPACES, case_sensitive=False),
    default="srgb",
    show_default=True,
    help="Output colour space (and its transfer curve; linear-srgb has none).",
)
@click.option(
    "--demosaic",
    type=click.Choice(DEMOSAIC_METHODS, case_sensitive=False),
    default="nn",
    show_default=True,
    help="Demosaicking: the network (nn) or a classic LibRaw method.",
)
@click.option(
    "--wb",
    default="camera",
    show_default=True,
    callback=_parse_wb,
    metavar="PRESET|KELVIN",
    help=f"White balance: {', '.join(WB_PRESETS)}, or a temperature such as 5500K.",
)
@click.option(
    "--exposure",
    type=click.FloatRange(-10.0, 10.0),
    default=0.0,
    show_default=True,
    metavar="EV",
    help="Exposure correction in stops.",
)
@click.option(
    "--denoise",
    type=click.Choice(("nn", "off"), case_sensitive=False),
    default="nn",
    show_default=True,
    help="Neural denoising, or off.",
)
@click.option(
    "--lens",
    type=click.Choice(("nn", "off"), case_sensitive=False),
    default="nn",
    show_default=True,
    help="Neural lens correction, or off.",
)
@suffix_opt("_nnip")
@engine_opts
@batch_opts
@click.pass_context
def develop(ctx: click.Context, inputs: Sequence[str], **params: Any) -> None:
    """Develop RAW files (CR3, CR2, NEF, ARW, DNG, ...) into finished images.

    Each output is {stem}{suffix}.{ext}, beside its input or in --output-dir. Exit code:
    0 all done (or skipped), 1 a file failed, 2 usage error, 130 interrupted.
    """
    fmt = params["format_"].lower()
    if fmt == "jpeg" and params["bits"] == 16:
        raise click.BadParameter("JPEG holds 8 bits only", ctx, param_hint="--bits")
    options = batch_options(params, suffix=params["suffix"], ext=EXTENSION_OF_FORMAT[fmt])
    items = collect_and_check(
        ctx, inputs, options, recursive=params["recursive"], extensions=RAW_EXTENSIONS
    )
    with reporting_errors(ctx):
        process = _make_processor(params, fmt)
    execute_batch(ctx, items, process, options)


def _develop_settings(params: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The develop pipeline's settings, by the names the options give them."""
    return {
        "format": fmt,
        "bits": params["bits"],
        "colorspace": params["colorspace"].lower(),
        "demosaic": params["demosaic"].lower(),
        "wb": params["wb"],
        "exposure": params["exposure"],
        "denoise": params["denoise"].lower(),
        "lens": params["lens"].lower(),
        "tile": params["tile"],
        "verbose": params["verbose"],
    }


def _make_processor(params: dict[str, Any], fmt: str) -> Callable[[Path, Path], Any]:
    """Resolve models directory and device once; return the per-file function."""
    from nnip.core.engine import resolve_providers
    from nnip.core.models import Registry

    registry = Registry(params["models_dir"])
    resolve_providers(params["device"])  # an unavailable --device fails the run at once
    settings = _develop_settings(params, fmt)
    process_file = getattr(importlib.import_module("nnip.develop"), "process_file", None)
    if process_file is None:
        return _pipeline_missing(registry, settings)

    from nnip.core.engine import Engine

    engine = Engine(device=params["device"], threads=params["threads"], registry=registry)
    if params["verbose"]:
        click.echo(f"{PROG}: device {engine.device}", err=True)

    def process(src: Path, dst: Path) -> Any:
        return process_file(src, dst, engine=engine, registry=registry, **settings)

    return process


def _pipeline_missing(registry: Any, settings: dict[str, Any]) -> Callable[[Path, Path], Any]:
    """Per-file stand-in while ``nnip.develop.process_file`` is not installed."""
    from nnip.core.errors import NnipError

    # Demosaicking first: without it there is no image at all; denoise and lens refine it.
    needed = [task for task in ("demosaic", "denoise", "lens") if settings[task] == "nn"]

    def process(src: Path, dst: Path) -> Any:
        for task in needed:
            registry.find(task)  # raises ModelNotFoundError naming the task and directory
        raise NnipError("the develop pipeline is not installed in this version of nnip")

    return process


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``nnip``)."""
    run_main(cli, PROG, argv)


if __name__ == "__main__":
    main()
