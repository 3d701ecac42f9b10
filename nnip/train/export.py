"""Export a trained checkpoint to ONNX and write its manifest entry.

``python -m nnip.train.export runs/upscale-fast --name upscale-fast`` does, in order:

1. rebuild the task's network from the checkpoint and re-parameterise it (``model.plain()``:
   every ECB block folded into one 3x3 conv);
2. export ONNX (opset 17, dynamic height and width) with the TorchScript exporter, and
   rewrite every PRelu with a constant slope (:func:`split_prelu`): one slope per layer
   becomes a LeakyRelu, which onnxruntime fuses into the conv (upscale-fast's session.run,
   benchmarks/gflops.py: 268 GFLOP/s against 145 per channel), per-channel slopes
   ``x + relu((a - 1) * x)`` (steeper slopes folded into the convs around them);
   onnxruntime's own PRelu kernel took 28-47 % of a whole-image run of upscale-fast and
   demosaic (measured with benchmarks/gflops.py's per-operator profile);
3. check parity: onnxruntime against the torch network on random inputs of two odd sizes
   (max abs difference <= 1e-4, else :class:`ExportError`);
4. measure the receptive-field margin from the ONNX graph's impulse response
   (:func:`nnip.core.tiling.measure_margin`) and count GFLOP per input megapixel from the
   graph (2 x multiply-accumulates of every Conv, from shape inference);
5. write the spec (all manifest fields but ``sha256``, which a file cannot hold of itself)
   into the ONNX ``metadata_props`` as ``nnip_spec``, hash the file, and replace the entry
   of the same name in ``manifest.json`` through :class:`nnip.core.models.ModelSpec`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
import torch
from onnx import shape_inference

from nnip.core.models import MANIFEST_NAME, ModelSpec, Registry, resolve_models_dir, sha256_of
from nnip.core.tiling import measure_margin
from nnip.train.loop import git_commit
from nnip.train.tasks import ExportSpec, get_task, run_config

__all__ = [
    "ExportError",
    "OPSET",
    "PARITY_TOL",
    "METADATA_KEY",
    "to_onnx",
    "split_prelu",
    "rewrite_installed",
    "check_parity",
    "onnx_gflop_per_mp",
    "onnx_margin",
    "write_manifest_entry",
    "export_model",
    "export_checkpoint",
    "main",
]

OPSET = 17
PARITY_TOL = 1e-4
METADATA_KEY = "nnip_spec"
_PROBE = 64  # spatial size used for shape inference when counting FLOPs


class ExportError(RuntimeError):
    """The exported graph does not compute what the torch network computes."""


def _dummy_inputs(spec: ExportSpec, height: int, width: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, t.channels, height, width, generator=generator) for t in spec.inputs]


def to_onnx(plain: torch.nn.Module, spec: ExportSpec) -> bytes:
    """Serialise ``plain`` (eval mode) as ONNX with dynamic batch, height and width."""
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    dynamic = {name: {0: "batch", 2: "height", 3: "width"} for name in names_in}
    dynamic.update({name: {0: "batch", 2: "out_height", 3: "out_width"} for name in names_out})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (see below); its deprecation notice is noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            plain.eval(),
            tuple(_dummy_inputs(spec, 32, 32)),
            buffer,
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, plain Conv graph
        )
    return buffer.getvalue()


def split_prelu(model_bytes: bytes) -> bytes:
    """Rewrite each PRelu whose slope is an initializer into what onnxruntime runs fastest.

    One slope for all channels: ``LeakyRelu(alpha=a)``, which the CPU provider fuses into
    the conv before it (no pass of its own). Per-channel slopes: ``x + relu((a - 1) * x)``,
    exact for slopes up to 1 (three passes, of which onnxruntime's NCHWc layout fuses the
    Relu and the Add: demosaic v6's session.run 0.83 -> 0.66 s on a 512x512 packed input,
    against ``a * x + (1 - a) * relu(x)`` before); channels with a steeper slope are first
    turned into ones with slope ``1 / a`` (:func:`_fold_steep_slopes`), and where that
    cannot be done the layer keeps the four-pass form. Graphs already in the four-pass form
    (files exported before) are recognised and rewritten the same way. Exact for any ``x``
    up to float rounding; the graph's other nodes, names and metadata are kept. PRelus with
    a computed slope stay.
    """
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    _join_split_prelu(graph)
    slopes = {init.name: init for init in graph.initializer}
    for node in graph.node:  # the exporter sometimes passes a shared weight via Identity
        if node.op_type == "Identity" and node.input[0] in slopes:
            slopes[node.output[0]] = slopes[node.input[0]]
    nodes = []
    for node in list(graph.node):
        if node.op_type != "PRelu" or node.input[1] not in slopes:
            nodes.append(node)
            continue
        x, slope_name = node.input
        slope = onnx.numpy_helper.to_array(slopes[slope_name]).astype(np.float32)
        base = node.name or node.output[0]
        if slope.size == 1:
            nodes.append(onnx.helper.make_node("LeakyRelu", [x], list(node.output),
                                               name=f"{base}/LeakyRelu", alpha=float(slope.ravel()[0])))
            continue
        gentle = _fold_steep_slopes(graph, node, slope)
        if gentle is None:
            nodes += _four_pass_prelu(graph, node, slope, base)
            continue
        below = onnx.numpy_helper.from_array(gentle - np.float32(1.0), f"{base}/slope_minus_one")
        graph.initializer.append(below)
        scaled, relu = f"{base}/scaled", f"{base}/relu"
        nodes += [
            onnx.helper.make_node("Mul", [x, below.name], [scaled], name=f"{base}/MulSlope"),
            onnx.helper.make_node("Relu", [scaled], [relu], name=f"{base}/Relu"),
            onnx.helper.make_node("Add", [x, relu], list(node.output), name=f"{base}/Add"),
        ]
    del graph.node[:]
    graph.node.extend(_prune(nodes, graph))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _four_pass_prelu(graph, node, slope: np.ndarray, base: str) -> list:
    """``a * x + (1 - a) * relu(x)``: exact for any slope, one pass more than the 3-pass form."""
    x, slope_name = node.input
    keep = onnx.numpy_helper.from_array(1.0 - slope, f"{base}/one_minus_slope")
    graph.initializer.append(keep)
    relu, scaled, kept = (f"{base}/relu", f"{base}/scaled", f"{base}/kept")
    return [
        onnx.helper.make_node("Relu", [x], [relu], name=f"{base}/Relu"),
        onnx.helper.make_node("Mul", [x, slope_name], [scaled], name=f"{base}/MulSlope"),
        onnx.helper.make_node("Mul", [relu, keep.name], [kept], name=f"{base}/MulRest"),
        onnx.helper.make_node("Add", [scaled, kept], list(node.output), name=f"{base}/Add"),
    ]


def _readers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _fold_steep_slopes(graph, node, slope: np.ndarray) -> np.ndarray | None:
    """The PRelu's slopes with every slope above 1 made gentle, or None where it cannot be.

    ``prelu_a(y) = -a * prelu_(1/a)(-y)``: a channel with ``a > 1`` computes ``-y`` instead
    (its row of the conv before negated) and is rescaled by ``-a`` in the convs after it
    (their input column), so every slope is at most 1. This needs the PRelu's input made by
    a Conv read by nothing else, its output read only as the data input of Convs, and every
    weight touched an initializer of its own (the initializers are changed in place).
    """
    steep = slope.reshape(-1) > 1.0
    if not steep.any():
        return slope
    inits = {init.name: init for init in graph.initializer}
    x, out = node.input[0], node.output[0]
    producer = next((n for n in graph.node if x in n.output), None)
    readers = _readers(graph, out)
    if (producer is None or producer.op_type != "Conv" or _readers(graph, x) != [node]
            or not readers or any(r.op_type != "Conv" or r.input[0] != out
                                  or list(r.input).count(out) != 1 for r in readers)):
        return None
    weights = [name for conv in (producer, *readers) for name in conv.input[1:]]
    if any(name not in inits or len(_readers(graph, name)) != 1 for name in weights):
        return None
    if any(a.name == "group" and a.i != 1 for r in readers for a in r.attribute):
        return None
    a = slope.reshape(-1).astype(np.float64)

    def update(name: str, change) -> None:
        array = onnx.numpy_helper.to_array(inits[name]).astype(np.float64)
        inits[name].CopyFrom(onnx.numpy_helper.from_array(
            change(array).astype(onnx.numpy_helper.to_array(inits[name]).dtype), name))

    flip = np.where(steep, -1.0, 1.0)
    for name in producer.input[1:]:  # weight (Cout, Cin/g, kh, kw) and bias (Cout,)
        update(name, lambda w: w * flip.reshape((-1,) + (1,) * (w.ndim - 1)))
    rescale = np.where(steep, -a, 1.0)
    for reader in readers:  # weight (Cout, C, kh, kw): column c
        update(reader.input[1], lambda w: w * rescale.reshape(1, -1, 1, 1))
    gentle = np.where(steep, 1.0 / a, a)
    return gentle.astype(np.float32).reshape(slope.shape)


def _join_split_prelu(graph) -> None:
    """Put ``a * x + (1 - a) * relu(x)`` (the four-pass form of older exports) back as PRelu."""
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    made_by = {out: n for n in graph.node for out in n.output}
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        muls = [made_by.get(name) for name in add.input]
        if any(m is None or m.op_type != "Mul" for m in muls):
            continue
        for scaled, kept in (muls, muls[::-1]):
            relu = made_by.get(kept.input[0])
            if (relu is None or relu.op_type != "Relu" or relu.input[0] != scaled.input[0]
                    or scaled.input[1] not in inits or kept.input[1] not in inits):
                continue
            a, rest = inits[scaled.input[1]], inits[kept.input[1]]
            inner = (scaled.output[0], kept.output[0], relu.output[0])
            if (a.shape != rest.shape or not np.allclose(rest, 1.0 - a, atol=1e-6)
                    or any(len(_readers(graph, name)) != 1 for name in inner)):
                continue
            base = add.name.removesuffix("/Add") or add.output[0]
            replaced[id(add)] = onnx.helper.make_node(
                "PRelu", [scaled.input[0], scaled.input[1]], list(add.output), name=base)
            dropped |= {id(scaled), id(kept), id(relu)}
            break
    if not replaced:
        return
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)


def _prune(nodes: list, graph) -> list:
    """``nodes`` without Identity nodes nobody reads; drops initializers nobody reads.

    A LeakyRelu holds its slope as an attribute, so the exporter's Identity passing the
    PReLU weight on, and the weight, would be left dangling (onnxruntime warns of each).
    """
    outputs = {o.name for o in graph.output}
    read = {name for node in nodes for name in node.input} | outputs
    kept = [n for n in nodes if n.op_type != "Identity" or any(o in read for o in n.output)]
    read = {name for node in kept for name in node.input} | outputs
    unused = [init for init in graph.initializer if init.name not in read]
    for init in unused:
        graph.initializer.remove(init)
    return kept


def rewrite_installed(name: str, models_dir: Path | None = None, tol: float = PARITY_TOL) -> ModelSpec:
    """Apply :func:`split_prelu` to the installed model ``name``; check it; update the manifest.

    For models exported before the rewrite: the outputs of the old and new graph are
    compared on random inputs of two odd sizes (max abs difference <= ``tol``), then the
    file is replaced atomically and its manifest entry gets the new sha256.
    """
    models_dir = resolve_models_dir(models_dir)
    registry = Registry(models_dir)
    spec = registry.get(name)
    path = registry.load(spec)
    old = path.read_bytes()
    new = split_prelu(old)
    rng = np.random.default_rng(0)
    worst = 0.0
    for height, width in ((37, 53), (64, 48)):
        feed = {t.name: rng.random((1, t.channels, height, width), dtype=np.float32)
                for t in spec.inputs}
        before = _session(old).run(None, feed)[0]
        after = _session(new).run(None, feed)[0]
        worst = max(worst, float(np.abs(before - after).max()))
    if worst > tol:
        raise ExportError(f"{name}: rewritten graph differs by {worst:.2e} (> {tol:.0e})")
    _write_atomic(path, new)
    updated = ModelSpec.from_dict({**spec.to_dict(), "sha256": sha256_of(path)}, models_dir)
    write_manifest_entry(models_dir, updated)
    return updated


def _session(model_bytes: bytes, threads: int = 1):
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def check_parity(
    plain: torch.nn.Module,
    model_bytes: bytes,
    spec: ExportSpec,
    sizes: Sequence[tuple[int, int]] = ((37, 53), (64, 48)),
    tol: float = PARITY_TOL,
) -> float:
    """Largest |onnxruntime - torch| over random inputs of ``sizes``; raise above ``tol``."""
    session = _session(model_bytes)
    worst = 0.0
    for index, (height, width) in enumerate(sizes):
        inputs = _dummy_inputs(spec, height, width, seed=index + 1)
        with torch.no_grad():
            expected = plain(*inputs).numpy()
        feed = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs)}
        got = session.run([spec.outputs[0].name], feed)[0]
        if got.shape != expected.shape:
            raise ExportError(f"onnx output shape {got.shape} != torch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > tol:
        raise ExportError(f"onnxruntime differs from torch by {worst:.2e} (> {tol:.0e})")
    return worst


def onnx_gflop_per_mp(model_bytes: bytes) -> float:
    """2 x multiply-accumulates of every Conv / ConvTranspose per input megapixel.

    Shapes come from ONNX shape inference at a ``64 x 64`` input, so convolutions running
    at any resolution inside the graph are counted at their real size. Element-wise ops
    (activations, additions, depth-to-space) are not counted, as published tables do.
    """
    model = onnx.load_from_string(model_bytes)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_value = 1
        dims[2].dim_value = _PROBE
        dims[3].dim_value = _PROBE
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    weights = {init.name: list(init.dims) for init in inferred.graph.initializer}
    macs = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        kernel = weights[node.input[1]]  # Conv: (out, in/g, kh, kw); ConvTranspose: (in, out/g, kh, kw)
        per_position = int(np.prod(kernel[1:]))
        if node.op_type == "Conv":
            out = shapes[node.output[0]]
            macs += int(np.prod(out[1:])) // out[1] * kernel[0] * per_position
        else:
            source = shapes.get(node.input[0])
            macs += int(np.prod(source[2:])) * kernel[0] * per_position
    return 2.0 * macs / (_PROBE * _PROBE) * 1e6 / 1e9


def onnx_margin(model_bytes: bytes, spec: ExportSpec) -> int:
    """Receptive-field margin of the ONNX graph, from its impulse response (input pixels)."""
    session = _session(model_bytes)
    names = [t.name for t in spec.inputs]

    def run(arrays: np.ndarray | list[np.ndarray]) -> np.ndarray:
        # measure_margin hands a lone input over bare, several as a list.
        arrays = [arrays] if isinstance(arrays, np.ndarray) else arrays
        return session.run([spec.outputs[0].name], dict(zip(names, arrays)))[0]

    return measure_margin(
        run, [t.channels for t in spec.inputs], scale=spec.scale, align=spec.align
    )


def _with_metadata(model_bytes: bytes, entry: Mapping[str, Any]) -> bytes:
    model = onnx.load_from_string(model_bytes)
    del model.metadata_props[:]
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, json.dumps(entry, sort_keys=True)
    return model.SerializeToString()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    # mkstemp makes the file private (0600); shipped files must be readable as usual.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_manifest_entry(models_dir: Path, spec: ModelSpec) -> None:
    """Put ``spec`` into ``models_dir/manifest.json``, replacing an entry of the same name."""
    manifest = models_dir / MANIFEST_NAME
    data = (
        json.loads(manifest.read_text(encoding="utf-8"))
        if manifest.is_file()
        else {"format_version": 1, "models": []}
    )
    models = [m for m in data.get("models", []) if m.get("name") != spec.name]
    models.append(spec.to_dict())
    data["models"] = sorted(models, key=lambda m: m["name"])
    _write_atomic(manifest, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def export_model(
    model: torch.nn.Module,
    export_spec: ExportSpec,
    name: str,
    models_dir: Path | None = None,
    *,
    version: str = "1",
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Re-parameterise ``model``, export, check, measure, and register it as ``name``.

    Parameters
    ----------
    model : torch.nn.Module
        A training network with ``plain()`` (see :mod:`nnip.train.tasks`).
    export_spec : ExportSpec
        The task's manifest fields.
    models_dir : Path, optional
        Where ``NAME.onnx`` and the manifest go; default as :class:`Registry` resolves it.

    Returns
    -------
    ModelSpec
        The entry as read back through :class:`Registry` (file verified by sha256).
    """
    models_dir = resolve_models_dir(models_dir)
    plain = model.plain().cpu().float().eval()
    raw = split_prelu(to_onnx(plain, export_spec))
    parity = check_parity(plain, raw, export_spec)
    entry = {
        "name": name,
        "task": export_spec.task,
        "version": version,
        "file": f"{name}.onnx",
        "inputs": [t.to_dict() for t in export_spec.inputs],
        "outputs": [t.to_dict() for t in export_spec.outputs],
        "scale": export_spec.scale,
        "margin": onnx_margin(raw, export_spec),
        "align": export_spec.align,
        "gflop_per_mp": round(onnx_gflop_per_mp(raw), 2),
        "params": int(sum(p.numel() for p in plain.parameters())),
        "provenance": dict(provenance or {}),
        "metrics": {**dict(metrics or {}), "onnx_parity_max_abs": parity},
        "description": export_spec.description,
        **({"tiles": dict(export_spec.tiles)} if export_spec.tiles else {}),
    }
    final = _with_metadata(raw, entry)
    path = models_dir / entry["file"]
    _write_atomic(path, final)
    spec = ModelSpec.from_dict({**entry, "sha256": sha256_of(path)}, models_dir)
    write_manifest_entry(models_dir, spec)
    registry = Registry(models_dir)
    loaded = registry.get(name)
    registry.load(loaded)
    return loaded


def export_checkpoint(
    checkpoint: Path,
    name: str,
    models_dir: Path | None = None,
    *,
    version: str = "1",
    command: str = "",
    metrics: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Export a run's checkpoint (``best.pt`` or ``last.pt``); see :func:`export_model`.

    The manifest's provenance joins the training run's (data, training command) with this
    export's command and the current commit.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    task = get_task(state["task"])
    config = run_config(state["config"])
    model = task.build_model(config)
    model.load_state_dict(state["model"])
    trained = dict(state.get("provenance", {}))
    provenance = {
        "data": trained.get("data", []),
        "data_description": trained.get("data_description", ""),
        "command": trained.get("command", ""),
        "export_command": command,
        "commit": git_commit(),
        "training_commit": trained.get("commit", ""),
        "checkpoint_step": int(state.get("step", 0)),
        "config": config,
    }
    all_metrics = {**dict(state.get("metrics", {})), **dict(metrics or {})}
    return export_model(
        model, task.export_spec(config), name, models_dir,
        version=version, provenance=provenance, metrics=all_metrics,
    )


def _parse_metric(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, float(value)
    except ValueError:
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnip.train.export",
        description="Export a training run to ONNX + a manifest entry.",
    )
    parser.add_argument("run", type=Path, nargs="?", help="run directory (or a .pt checkpoint)")
    parser.add_argument("--name", required=True, help="model name, e.g. upscale-fast")
    parser.add_argument("--rewrite-installed", action="store_true",
                        help="no run: apply the PRelu rewrite to the installed model NAME")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--models-dir", type=Path, help="default: the installed onnx_models/")
    parser.add_argument("--version", default="1")
    parser.add_argument("--metric", action="append", default=[], metavar="KEY=VALUE",
                        help="extra metric for the manifest (repeatable), e.g. set5_psnr_db=36.9")
    args = parser.parse_args(argv)
    if args.rewrite_installed:
        spec = rewrite_installed(args.name, args.models_dir)
        print(f"{spec.name}: PRelu rewritten; sha256 {spec.sha256}")
        return 0
    if args.run is None:
        parser.error("a run directory is needed (or --rewrite-installed)")
    checkpoint = args.run if args.run.is_file() else args.run / f"{args.checkpoint}.pt"
    if not checkpoint.is_file():
        print(f"error: no checkpoint {checkpoint}", file=sys.stderr)
        return 2
    command = "python -m nnip.train.export " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    spec = export_checkpoint(
        checkpoint, args.name, args.models_dir, version=args.version, command=command,
        metrics=dict(_parse_metric(m) for m in args.metric),
    )
    print(json.dumps({k: v for k, v in spec.to_dict().items() if k != "provenance"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
