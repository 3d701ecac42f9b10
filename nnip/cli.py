"""``nnip``: develop camera RAW files with neural networks.

``nnip develop IMG_0001.CR3`` writes ``IMG_0001.tif`` beside it; ``nnip models`` lists
every installed model. The command validates its options (choices and defaults come from
:class:`nnip.develop.DevelopOptions` and the modules behind it), resolves the models
directory and the device once, then hands every file to the batch runner, which calls
:func:`nnip.develop.process_file` through an atomic write.

Heavy imports (rawpy, Pillow, onnxruntime sessions) happen inside the commands, so
``nnip --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import click

from nnip.develop.colour import COLOUR_SPACES, parse_white_balance
from nnip.develop.demosaic import DEMOSAIC_METHODS
from nnip.develop.lens import LENS_MODES
from nnip.develop.pipeline import FORMAT_BITS, HIGHLIGHT_MODES, DevelopOptions
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
    markdown_opt,
    models_dir_opt,
    quality_opt,
    run_main,
    show_models,
    suffix_opt,
    version_opt,
)

__all__ = ["cli", "main", "EXTENSION_OF_FORMAT", "RAW_EXTENSIONS"]

PROG = "nnip"

#: Output file extension of each ``--format``.
EXTENSION_OF_FORMAT = {"tiff": "tif", "jpeg": "jpg", "png": "png", "dng": "dng"}
#: Extensions a directory walk (``--recursive``) picks up; explicit files are always tried.
RAW_EXTENSIONS = (
    ".cr3", ".cr2", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".rw2", ".orf",
    ".pef", ".dng", ".srw", ".x3f", ".3fr", ".iiq", ".kdc", ".dcr", ".mrw", ".erf", ".mos",
    ".rwl", ".raw", ".gpr",
)  # fmt: skip

_DEFAULTS = DevelopOptions()


def _check_denoise(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``auto``, ``off`` or a strength 0..2, checked here so a bad value names the option."""
    from nnip.develop.denoise import parse_denoise

    try:
        parse_denoise(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


def _parse_wb(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    """The library's white balance parser; its message lists what is accepted."""
    try:
        return parse_white_balance(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.group(name=PROG, context_settings={"help_option_names": ["-h", "--help"]})
@version_opt(PROG)
def cli() -> None:
    """Neural network RAW development: RAW in, finished image out."""


@cli.command()
@models_dir_opt
@json_opt
@markdown_opt
@click.pass_context
def models(ctx: click.Context, models_dir: Path | None, as_json: bool, markdown: bool) -> None:
    """List every installed model (all tasks)."""
    show_models(ctx, models_dir, None, as_json, markdown)


@cli.command()
@inputs_arg
@format_opt(tuple(FORMAT_BITS), _DEFAULTS.format)
@bits_opt
@quality_opt
@click.option(
    "--colorspace",
    type=click.Choice(tuple(COLOUR_SPACES), case_sensitive=False),
    default=_DEFAULTS.colorspace,
    show_default=True,
    help="Output colour space, encoded with its own transfer curve (linear-srgb: none).",
)
@click.option(
    "--demosaic",
    type=click.Choice(DEMOSAIC_METHODS, case_sensitive=False),
    default=_DEFAULTS.demosaic,
    show_default=True,
    help="Demosaicking: the network (nn) or a classic LibRaw method.",
)
@click.option(
    "--wb",
    default=str(_DEFAULTS.wb),
    show_default=True,
    callback=_parse_wb,
    metavar="MODE",
    help="White balance: camera (as shot), auto, daylight, a preset (cloudy, shade, "
    "tungsten, fluorescent, flash), a temperature such as 5500K, or R,G,B multipliers.",
)
@click.option(
    "--exposure",
    type=click.FloatRange(-10.0, 10.0),
    default=_DEFAULTS.exposure,
    show_default=True,
    metavar="EV",
    help="Exposure correction in stops.",
)
@click.option(
    "--highlights",
    type=click.Choice(HIGHLIGHT_MODES, case_sensitive=False),
    default=_DEFAULTS.highlights,
    show_default=True,
    help="Clipped highlights: clip to white, or reconstruct from the unclipped channels.",
)
@click.option(
    "--denoise",
    default=_DEFAULTS.denoise,
    callback=_check_denoise,
    show_default=True,
    metavar="auto|off|STRENGTH",
    help="Neural denoising of the mosaic: auto (strength 1 = the estimated noise), off, "
    "or a strength 0..2 (more never gives a noisier result). --verbose prints the noise "
    "parameters used per file.",
)
@click.option(
    "--lens",
    type=click.Choice(LENS_MODES, case_sensitive=False),
    default=_DEFAULTS.lens,
    show_default=True,
    metavar="auto|off|deblur|profile",
    help="Lens correction: profile (lensfun: distortion, lateral CA, vignetting), deblur "
    "(the network: aberration and diffraction blur), auto (both where possible), or off.",
)
@suffix_opt("")
@engine_opts
@batch_opts
@click.pass_context
def develop(ctx: click.Context, inputs: Sequence[str], **params: Any) -> None:
    """Develop RAW files (CR3, CR2, NEF, ARW, DNG, ...) into finished images.

    Each output is {stem}{suffix}.{ext}, beside its input or in --output-dir. Exit code:
    0 all done (or skipped), 1 a file failed, 2 usage error, 130 interrupted.
    """
    develop_options = _develop_options(ctx, params)
    options = batch_options(
        params, suffix=params["suffix"], ext=EXTENSION_OF_FORMAT[develop_options.format]
    )
    items = collect_and_check(
        ctx, inputs, options, recursive=params["recursive"], extensions=RAW_EXTENSIONS
    )
    execute_batch(ctx, items, options, _make_processor, params, develop_options)


def _develop_options(ctx: click.Context, params: dict[str, Any]) -> DevelopOptions:
    """The pipeline's options; a combination it refuses (16-bit JPEG) is a usage error."""
    try:
        return DevelopOptions(
            format=params["format_"].lower(),
            bits=params["bits"],
            quality=params["quality"],
            colorspace=params["colorspace"].lower(),
            demosaic=params["demosaic"].lower(),
            wb=params["wb"],
            exposure=params["exposure"],
            highlights=params["highlights"].lower(),
            denoise=params["denoise"].lower(),
            lens=params["lens"].lower(),
            tile=params["tile"],
            verbose=params["verbose"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None


def _make_processor(
    params: dict[str, Any], develop_options: DevelopOptions
) -> Callable[[Path, Path], dict[str, Any]]:
    """Resolve models directory and device once; return the per-file function.

    It is a :class:`~nnip.core.batch.FileStages` (read the RAW, develop, write), so that
    a serial batch reads the next RAW and writes the last image while it develops.
    """
    from nnip.core.batch import FileStages, atomic_write
    from nnip.core.engine import Engine
    from nnip.core.errors import ModelNotFoundError
    from nnip.core.models import Registry
    from nnip.develop import build_pipeline
    from nnip.develop.denoise import parse_denoise
    from nnip.develop.pipeline import describe_pipeline
    from nnip.develop.process import Developed, develop_raw
    from nnip.raw.frame import RawFrame, read_raw

    registry = Registry(params["models_dir"])
    engine = Engine(device=params["device"], threads=params["threads"], registry=registry,
                    precision=params["precision"])
    specs = []
    wanted = {
        "denoise": (parse_denoise(develop_options.denoise), develop_options.denoise_model),
        "demosaic": (develop_options.demosaic == "nn", develop_options.demosaic_model),
        "lens": (develop_options.lens in ("auto", "deblur"), develop_options.lens_model),
    }
    for task, (enabled, name) in wanted.items():
        if not enabled:
            continue
        try:  # for the records; a missing model is each file's error, from the pipeline
            specs.append(registry.find(task, name))
        except ModelNotFoundError:
            pass

    def models() -> list[str]:
        # What runs: under --precision a model's int8 / fp16 variant may take its place.
        return [engine.for_device(spec).name for spec in specs]

    if params["verbose"]:
        click.echo(f"{PROG}: device {engine.device}; models {', '.join(models()) or 'none'}", err=True)
        for line in describe_pipeline(build_pipeline(develop_options, engine, registry)):
            click.echo(f"{PROG}:   {line}", err=True)

    def process(raw: RawFrame, dst: Path) -> Developed:
        return develop_raw(raw, develop_options, engine, registry)

    def save(developed: Developed, dst: Path) -> dict[str, Any]:
        atomic_write(dst, developed.write)
        record = developed.record
        details = [record["noise"]["text"]] if "noise" in record else []
        details += [record["lateral_ca"]] if "lateral_ca" in record else []
        # the device may have stepped down (auto) once a session opened
        return {**record, "device": engine.device, "models": models(), "details": details}

    return FileStages(load=read_raw, process=process, save=save)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``nnip``)."""
    run_main(cli, PROG, argv)


if __name__ == "__main__":
    main()
