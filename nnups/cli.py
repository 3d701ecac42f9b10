"""``nnups``: faithful 2x upscaling of JPEG, PNG and TIFF images.

``nnups upscale photo.jpg`` writes ``photo_x2.jpg`` beside it; ``nnups models`` lists the
installed upscaling models. The command body resolves the model and the device once,
then hands every file to the batch runner (names, skip/overwrite, per-file errors, exit
codes). Heavy imports (numpy, onnxruntime, image codecs) happen inside the commands, so
``nnups --help`` is instant.

A missing model or an unavailable device is a problem with the whole run: one line
``nnups: message`` on stderr and exit 1, before any file is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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
    markdown_opt,
    models_dir_opt,
    quality_opt,
    run_main,
    show_models,
    suffix_opt,
    version_opt,
)

__all__ = ["cli", "main", "OUTPUT_FORMATS"]

PROG = "nnups"

#: ``--format`` choices (imageio's FORMATS, not imported here to keep --help instant);
#: ``same`` keeps each input's extension, and the output is written in the format it names.
OUTPUT_FORMATS = ("same", "jpeg", "png", "tiff")


@click.group(name=PROG, context_settings={"help_option_names": ["-h", "--help"]})
@version_opt(PROG)
def cli() -> None:
    """Faithful 2x neural upscaling of JPEG, PNG and TIFF images."""


@cli.command()
@models_dir_opt
@json_opt
@markdown_opt
@click.pass_context
def models(ctx: click.Context, models_dir: Path | None, as_json: bool, markdown: bool) -> None:
    """List the installed upscaling models."""
    show_models(ctx, models_dir, "upscale", as_json, markdown)


@cli.command()
@inputs_arg
@click.option(
    "-m",
    "--model",
    default=None,
    metavar="fast|quality|NAME",
    help="Upscaling model (a manifest name or its short form). Default: the first "
    "upscale model of the manifest.",
)
@click.option(
    "--strength",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    help="How much of the network's detail to keep (0 = plain resampling).",
)
@format_opt(OUTPUT_FORMATS, "same")
@bits_opt
@quality_opt
@click.option(
    "--tiled-tiff",
    is_flag=True,
    help="Write a tiled BigTIFF, streamed to disk band by band (never whole in memory); "
    "implies --format tiff. TIFF outputs over 1 GiB uncompressed are always written so.",
)
@suffix_opt("_x2")
@engine_opts
@batch_opts
@click.pass_context
def upscale(ctx: click.Context, inputs: Sequence[str], **params: Any) -> None:
    """Upscale INPUTS (files, glob patterns, directories with -r) by 2.

    Each output is {stem}{suffix}.{ext}, beside its input or in --output-dir. Exit code:
    0 all done (or skipped), 1 a file failed, 2 usage error, 130 interrupted.
    """
    fmt = params["format_"].lower()
    if fmt == "jpeg" and params["bits"] == 16:
        raise click.BadParameter("JPEG holds 8 bits only", ctx, param_hint="--bits")
    if params["tiled_tiff"]:
        if fmt not in ("same", "tiff"):
            raise click.BadParameter(f"a tiled output is a TIFF, not {fmt.upper()}", ctx,
                                     param_hint="--tiled-tiff")
        fmt = "tiff"
    from nnip.core.imageio import FORMAT_EXTENSIONS, IMAGE_EXTENSIONS

    ext = None if fmt == "same" else FORMAT_EXTENSIONS[fmt]
    options = batch_options(params, suffix=params["suffix"], ext=ext)
    items = collect_and_check(
        ctx, inputs, options, recursive=params["recursive"], extensions=IMAGE_EXTENSIONS
    )
    execute_batch(ctx, items, options, _make_processor, params, fmt)


def _make_processor(params: dict[str, Any], fmt: str):
    """Resolve the model and the device once; return the per-file function.

    It is a :class:`~nnip.core.batch.FileStages`, so that a serial batch decodes the next
    input while this one is upscaled and written.
    """
    from nnip.core.batch import FileStages, atomic_write
    from nnip.core.engine import Engine
    from nnip.core.imageio import Image, read_image
    from nnip.core.models import Registry
    from nnups.upscale import write_upscaled

    registry = Registry(params["models_dir"])
    spec = registry.find("upscale", params["model"])
    engine = Engine(device=params["device"], threads=params["threads"], registry=registry,
                    precision=params["precision"])
    # Open the session now: a corrupt model or a device that fails to start is one line
    # for the whole run, and --verbose can name the device that really runs.
    session = engine.session(spec)
    running = engine.for_device(spec)  # its int8 / fp16 variant under --precision, if installed
    if params["verbose"]:
        providers = ", ".join(session.get_providers())
        click.echo(
            f"{PROG}: device {engine.device} ({providers}); "
            f"model {running.name} v{running.version} ({running.path})",
            err=True,
        )
    write_format = None if fmt == "same" else fmt

    def process(image: Image, dst: Path) -> dict[str, Any]:
        # Upscaled inside the write: a large TIFF is streamed band by band as it is made
        # (so the writing is this step's, not a background save's).
        atomic_write(
            dst,
            lambda tmp: write_upscaled(
                tmp, image, engine, spec, format=write_format, bits=params["bits"],
                quality=params["quality"], tiled=params["tiled_tiff"],
                strength=params["strength"], tile=params["tile"],
            ),
        )
        return {"device": engine.device, "models": [running.name], "notices": list(image.meta.notices)}

    return FileStages(load=read_image, process=process, save=lambda record, dst: record)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``nnups``)."""
    run_main(cli, PROG, argv)


if __name__ == "__main__":
    main()
