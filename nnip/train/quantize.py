"""int8 variants of shipped models: onnxruntime static quantisation, QDQ format.

``python -m nnip.train.quantize upscale-fast`` does, in order:

1. calibration data from the *training* images (never a benchmark image): deterministic
   crops of the teachers (area/2 of the photos, as training uses them) of the folders in
   the model's provenance, turned into the model's input as training does it (upscale: the
   protocol's bicubic LR rounded to 8 bits; demosaic: the RGGB mosaic, packed; denoise:
   a simulated noisy mosaic and its noise map; lens: the training simulation, a random lens
   through ``raw_pair``, the demosaic and the optics map);
2. ``onnxruntime.quantization.quantize_static``: QDQ format, uint8 activations, int8
   weights per output channel, ranges from the chosen calibration (MinMax, Percentile or
   Entropy; histograms are collected a chunk of crops at a time so memory stays bounded),
   by default leaving the first convolutions and the tail (last convolutions, residual
   add, pixel shuffle) in float: they touch the image itself, where 8 bits cost the most;
3. a self-check: PSNR of the int8 output against the float one on other training crops;
4. ``NAME-int8.onnx`` and its manifest entry (``variant_of: NAME``, ``precision: int8``;
   see :mod:`nnip.core.models`) in the output models directory.

Whether a variant ships is a separate decision: run the task's quality benchmark on it
(``benchmarks/sr_quality.py --models NAME-int8 --models-dir DIR``,
``benchmarks/demosaic_quality.py --models NAME-int8 --models-dir DIR``) and keep it only
where the drop is at most 0.05 dB. The fp32 model stays beside it: a variant is chosen by
name (``--model fast-int8``) or precision (``--precision int8``, or ``auto`` on a CPU with
int8 dot-product instructions).

``--weights FILE`` quantises a quantisation-aware fine-tune of NAME (:mod:`nnip.train.qat`)
instead of NAME's own weights, with the activation ranges it was trained with; the
self-check still measures the variant against the installed NAME.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import shutil
import sys
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx

from nnip.core.models import MANIFEST_NAME, ModelSpec, Registry, resolve_models_dir, sha256_of
from nnip.simulate.resize import imresize
from nnip.simulate.sensor import mosaic_bayer, pack_bayer
from nnip.train.data import PatchSampler, read_teacher, training_split
from nnip.train.export import METADATA_KEY, _write_atomic, write_manifest_entry

__all__ = [
    "CALIBRATIONS",
    "QuantizeOptions",
    "calibration_inputs",
    "name_nodes",
    "float_ends",
    "kept_in_float",
    "quantize_file",
    "output_psnr",
    "quantize_model",
    "variant_source",
    "install_variant",
    "main",
]

PRECISION = "int8"
#: Calibration methods by their command-line name.
CALIBRATIONS = ("minmax", "percentile", "entropy")
#: Training folders when a model's provenance names none that exist.
_SHARED_TRAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"
_DEFAULT_DATA = ("CBSD432", "T91", "photos")


@dataclass(frozen=True)
class QuantizeOptions:
    """How a model is quantised; recorded in the variant's provenance.

    ``float_convs`` convolutions at each end stay in float (:func:`float_ends`; 0: none),
    and every node whose name holds one of the ``|``-separated ``float_nodes`` (e.g.
    ``/body/acts.8/``: the activation before a float tail, where rounding costs most);
    ``symmetric`` makes activation ranges symmetric about 0; ``percentile`` is the
    Percentile calibration's. ``samples`` crops of ``crop`` input pixels (side), cut from
    ``images`` training files, calibrate, ``chunk`` at a time; ``check_samples`` other
    crops measure int8 against fp32.
    """

    calibration: str = "percentile"
    percentile: float = 99.999
    float_convs: int = 1
    float_nodes: str = ""
    per_channel: bool = True
    symmetric: bool = False
    samples: int = 48
    crop: int = 96
    images: int = 24
    check_samples: int = 8
    seed: int = 0
    chunk: int = 8

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration {self.calibration!r} is not one of {', '.join(CALIBRATIONS)}")
        if self.samples < 1 or self.samples % self.chunk:
            raise ValueError(f"samples ({self.samples}) must be a positive multiple of chunk ({self.chunk})")


# --------------------------------------------------------------------------- calibration data


#: A teacher crop (float32 (2c, 2c, 3), sRGB in [0, 1]) -> the model's inputs (CHW).
InputMaker = Callable[[np.ndarray], list[np.ndarray]]


def _upscale_inputs(teacher: np.ndarray) -> list[np.ndarray]:
    """The protocol's LR: MATLAB bicubic halving, rounded to 8 bits (what training uses most)."""
    lr = np.clip(np.round(imresize(teacher.astype(np.float64), 0.5) * 255.0), 0, 255) / 255.0
    return [np.ascontiguousarray(lr.transpose(2, 0, 1), dtype=np.float32)]


def _demosaic_inputs(teacher: np.ndarray) -> list[np.ndarray]:
    """The simulated RGGB mosaic of the crop, packed (training's ``mosaic_packed``)."""
    packed = pack_bayer(mosaic_bayer(teacher, "RGGB"), "RGGB")
    return [np.ascontiguousarray(packed, dtype=np.float32)]


def _denoise_inputs(teacher: np.ndarray) -> list[np.ndarray]:
    """A simulated noisy packed mosaic of the crop and its noise map (training's
    ``simulate_pair``: random ISO 100-25600, sensor, exposure), seeded by the crop itself."""
    from nnip.train.denoise_task import simulate_pair  # noqa: PLC0415 (torch-side module)

    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(teacher).tobytes()))
    mosaic, sigma, _ = simulate_pair(teacher, rng)
    return [mosaic, sigma]


def _lens_maker(spec: ModelSpec) -> InputMaker:
    """The lens model's inputs from a teacher crop, as its training stream makes them: with
    the model's own run config (spec provenance), a synthetic pattern in place of the photo
    at the configured share (lights above white among them), a random lens, field, ISO,
    sensor and light through ``raw_pair``, the configured demosaic (the installed model for
    ``nn``); seeded by the crop itself. Returns [image (3, S-2c, S-2c), optics (4, ...)]."""
    from nnip.train import lens_task  # noqa: PLC0415 (torch-side module)
    from nnip.train.tasks import get_task, run_config  # noqa: PLC0415

    config = {**get_task("lens").configs["fast"], **run_config(spec.provenance.get("config", {}))}
    demosaic = lens_task.demosaicker(str(config["demosaic"]))
    fraction = float(config["pattern_fraction"])

    def make(teacher: np.ndarray) -> list[np.ndarray]:
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(teacher).tobytes()))
        if rng.random() < fraction:
            kind = lens_task.PATTERN_KINDS[int(rng.integers(len(lens_task.PATTERN_KINDS)))]
            teacher = lens_task.random_pattern(kind, teacher.shape[0], rng)
        crop = np.ascontiguousarray(teacher, dtype=np.float32)
        image, optics, _ = lens_task.random_capture(crop, rng, config, demosaic)
        return [image, optics]

    return make


def _same_for_every_model(make: InputMaker) -> Callable[[ModelSpec], InputMaker]:
    return lambda spec: make


#: task -> (model spec -> its InputMaker); only the lens maker depends on the model (its run config).
_INPUT_MAKERS: Mapping[str, Callable[[ModelSpec], InputMaker]] = MappingProxyType({
    "upscale": _same_for_every_model(_upscale_inputs),
    "demosaic": _same_for_every_model(_demosaic_inputs),
    "denoise": _same_for_every_model(_denoise_inputs),
    "lens": _lens_maker,
})


def _data_dirs(spec: ModelSpec) -> list[Path]:
    """The training folders of ``spec`` (its provenance), else the shared default ones."""
    named = [Path(p) for p in spec.provenance.get("data", []) if Path(p).is_dir()]
    dirs = named or [_SHARED_TRAIN / d for d in _DEFAULT_DATA if (_SHARED_TRAIN / d).is_dir()]
    if not dirs:
        raise ValueError(f"no training images: none of {spec.name}'s data folders exists "
                         f"(nor {_SHARED_TRAIN})")
    return dirs


def calibration_inputs(
    spec: ModelSpec, count: int, crop: int, *, images: int, seed: int,
    data_dirs: Sequence[Path] | None = None,
) -> list[list[np.ndarray]]:
    """``count`` model input lists from crops of training teachers (module doc, step 1).

    ``images`` files, evenly spread over the training split of ``data_dirs`` (default:
    the model's training folders), give the teachers; crops are detail-weighted as in
    training and seeded, so the same call gives the same data.
    """
    if spec.task not in _INPUT_MAKERS:
        raise ValueError(f"no calibration data for task {spec.task!r} "
                         f"(known: {', '.join(sorted(_INPUT_MAKERS))})")
    make = _INPUT_MAKERS[spec.task](spec)
    dirs = list(data_dirs or _data_dirs(spec))
    for directory in dirs:
        if "bench" in Path(directory).resolve().parts:
            raise ValueError(f"{directory}: a benchmark folder is never calibration data")
    train, _ = training_split(dirs, every=40)
    picks = np.linspace(0, len(train) - 1, num=min(images, len(train))).round().astype(int)
    side = 2 * crop  # teacher pixels: the model's input is half the side in both tasks
    teachers = [t for t in (read_teacher(train[i]) for i in sorted(set(picks))) if min(t.shape[:2]) >= side]
    sampler = PatchSampler(teachers)
    rng = np.random.default_rng(seed)
    return [make(sampler.sample(rng, side).astype(np.float32) / 255.0) for _ in range(count)]


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of feeds, in ranges (chunked collection)."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._iter: Iterator[Mapping[str, np.ndarray]] = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._feeds[start_index:end_index])

    def get_next(self) -> Mapping[str, np.ndarray] | None:
        return next(self._iter, None)

    def __iter__(self):  # onnxruntime's base class protocol
        return iter(self._feeds)


def _feeds(model: onnx.ModelProto, inputs: Sequence[list[np.ndarray]]) -> list[dict[str, np.ndarray]]:
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    return [{n: a[None] for n, a in zip(names, arrays)} for arrays in inputs]


# --------------------------------------------------------------------------- quantisation


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a name (``{op}_{index}``): quantisation excludes nodes by name."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return model


def float_ends(model: onnx.ModelProto, convs: int = 1) -> list[str]:
    """Nodes to keep in float: the first ``convs`` convolutions from the inputs, the tail.

    The tail is every node after the last ``convs`` convolutions' inputs, those
    convolutions included (with ``convs=1``: the last convolutions, the residual add and
    the pixel shuffle): a quantised residual add would round the output image to 8 bits.
    Depths count convolutions along the longest path (the graph's nodes are in
    topological order, as ONNX requires).
    """
    nodes = list(model.graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    is_conv = [node.op_type == "Conv" for node in nodes]
    before = [0] * len(nodes)  # convolutions from a graph input up to this node, inclusive
    for i, node in enumerate(nodes):
        upstream = [before[producer[x]] for x in node.input if x in producer]
        before[i] = max(upstream, default=0) + is_conv[i]
    after = [0] * len(nodes)  # convolutions from this node to an output, exclusive
    consumers: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for j, node in enumerate(nodes):
        for x in node.input:
            if x in producer:
                consumers[producer[x]].append(j)
    for i in reversed(range(len(nodes))):
        after[i] = max((after[j] + is_conv[j] for j in consumers[i]), default=0)
    head = [n.name for i, n in enumerate(nodes) if before[i] <= convs and (is_conv[i] or before[i] < convs)]
    tail = [n.name for i, n in enumerate(nodes) if after[i] < convs]
    return list(dict.fromkeys(head + tail))


def kept_in_float(model: onnx.ModelProto, float_convs: int, float_nodes: str = "") -> list[str]:
    """Names of the nodes the quantiser leaves in float: :func:`float_ends` and every node
    whose name holds one of the ``|``-separated ``float_nodes``."""
    kept = float_ends(model, float_convs) if float_convs else []
    patterns = [p for p in float_nodes.split("|") if p]
    return list(dict.fromkeys(kept + [n.name for n in model.graph.node if any(p in n.name for p in patterns)]))


def quantize_file(
    source: Path, target: Path, inputs: Sequence[list[np.ndarray]], options: QuantizeOptions,
    ranges: Mapping[str, Sequence[float]] | None = None,
) -> list[str]:
    """Quantise the ONNX file ``source`` into ``target``; return the nodes left in float.

    ``ranges``: tensor name -> (low, high) used instead of the calibrated range (a
    quantisation-aware fine-tune's trained ranges); other tensors are calibrated."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = name_nodes(onnx.load(str(source)))
    excluded = kept_in_float(model, options.float_convs, options.float_nodes)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[options.calibration]
    extra: dict[str, Any] = {
        "ActivationSymmetric": options.symmetric,
        "CalibTensorRangeSymmetric": options.symmetric,
        "CalibPercentile": options.percentile,
        "CalibStridedMinMax": options.chunk,  # collect histograms a chunk at a time (memory)
    }
    if ranges:
        extra["TensorQuantOverrides"] = {name: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
                                         for name, (low, high) in ranges.items()}
    # onnxruntime prints its progress on stdout, which belongs to our JSON: send it to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(
            model, str(target), _Reader(_feeds(model, inputs)),
            quant_format=QuantFormat.QDQ, per_channel=options.per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=method, extra_options=extra,
        )
    return excluded


def output_psnr(source: Path, target: Path, inputs: Sequence[list[np.ndarray]]) -> float:
    """Mean PSNR (dB, peak 1) of ``target``'s first output against ``source``'s."""
    import onnxruntime as ort

    def session(path: Path):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    reference, quantised = session(source), session(target)
    model = onnx.load(str(source), load_external_data=False)
    values = []
    for feed in _feeds(model, inputs):
        a = reference.run(None, feed)[0].astype(np.float64)
        b = quantised.run(None, feed)[0].astype(np.float64)
        values.append(10.0 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-20)))
    return float(np.mean(values))


def _with_spec_metadata(path: Path, entry: Mapping[str, Any]) -> None:
    """Replace the file's ``nnip_spec`` metadata (as export writes it) with ``entry``."""
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, json.dumps(entry, sort_keys=True)
    _write_atomic(path, model.SerializeToString())


def quantize_model(
    name: str,
    models_dir: Path | None = None,
    out_dir: Path | None = None,
    options: QuantizeOptions = QuantizeOptions(),
    *,
    command: str = "",
    data_dirs: Sequence[Path] | None = None,
    weights: Path | None = None,
    use_trained_ranges: bool = True,
) -> ModelSpec:
    """Write ``NAME-int8.onnx`` and its manifest entry into ``out_dir``; see the module doc.

    ``out_dir`` defaults to ``models_dir`` (the installed models). When they differ, the
    manifest and files of ``models_dir`` are copied first, so ``out_dir`` is a complete
    models directory to benchmark with ``--models-dir``. ``weights``: an ONNX file of the
    same network with other weights (a quantisation-aware fine-tune, :mod:`nnip.train.qat`)
    to quantise instead of NAME's own; the variant is still measured against NAME. A
    fine-tune's activation ranges are used as trained unless ``use_trained_ranges`` is off.
    """
    spec, reference, out_dir = variant_source(name, models_dir, out_dir)
    source, tuned = (reference, {}) if weights is None else (Path(weights), _fine_tune_record(weights, spec))
    total = options.samples + options.check_samples
    inputs = calibration_inputs(spec, total, options.crop, images=options.images,
                                seed=options.seed, data_dirs=data_dirs)
    variant = f"{name}-{PRECISION}"
    target = out_dir / f"{variant}.onnx"
    with tempfile.TemporaryDirectory(prefix="nnip-quantize-") as tmp:
        staged = Path(tmp) / target.name
        trained = tuned.get("fine_tune", {}).get("qat", {}).get("tensor_ranges") if use_trained_ranges else None
        fine_tuned = tuned.get("fine_tune", {}).get("qat", {})
        asked = (options.float_convs, options.float_nodes)
        if trained and (fine_tuned.get("float_convs"), fine_tuned.get("float_nodes", "")) != asked:
            raise ValueError(f"{weights} was fine-tuned with float_convs={fine_tuned.get('float_convs')}, "
                             f"float_nodes={fine_tuned.get('float_nodes', '')!r}, not {asked[0]}, {asked[1]!r}")
        excluded = quantize_file(source, staged, inputs[: options.samples], options, trained)
        agreement = output_psnr(reference, staged, inputs[options.samples:])
        entry = {
            **spec.to_dict(),
            "name": variant,
            "file": target.name,
            "variant_of": name,
            "precision": PRECISION,
            "provenance": {
                **spec.provenance,
                "quantize_command": command,
                "quantization": {**asdict(options), "format": "QDQ", "activations": "uint8",
                                 "weights": "int8", "float_nodes": excluded,
                                 "source_sha256": spec.sha256, **tuned,
                                 **({"trained_ranges": len(trained)} if trained else {})},
            },
            "metrics": {"int8_vs_fp32_psnr_db": round(agreement, 2)},
            "description": f"int8 (onnxruntime static QDQ) variant of {name}: {spec.description}",
        }
        return install_variant(entry, staged, target, out_dir)


def _fine_tune_record(weights: Path, spec: ModelSpec) -> dict[str, Any]:
    """What the variant's provenance says of ``weights`` (checked to be NAME's network:
    same inputs and outputs): its hash and the fine-tune's own record (its export metadata)."""
    model = onnx.load(str(weights), load_external_data=False)
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    wanted = ([t.name for t in spec.inputs], [t.name for t in spec.outputs])
    if names != wanted:
        raise ValueError(f"{weights}: inputs/outputs {names} are not {spec.name}'s {wanted}")
    meta = {p.key: p.value for p in model.metadata_props}
    fine_tune = json.loads(meta.get(METADATA_KEY, "{}")).get("provenance", {})
    return {"weights": str(weights), "weights_sha256": sha256_of(Path(weights)),
            "fine_tune": {k: v for k, v in fine_tune.items() if k in ("qat_command", "qat", "equalize_command", "equalization", "commit")}}


def variant_source(
    name: str, models_dir: Path | None, out_dir: Path | None
) -> tuple[ModelSpec, Path, Path]:
    """The original model ``name`` (a variant is refused), its checked file, and the models
    directory its variant goes to: ``out_dir``, else ``models_dir``. A different ``out_dir``
    first gets a copy of the models, so it is a complete directory to benchmark."""
    registry = Registry(models_dir)
    spec = registry.get(name)
    if spec.variant_of:
        raise ValueError(f"{name} is already a variant (of {spec.variant_of}); use the original")
    source = registry.load(spec)
    out_dir = Path(out_dir) if out_dir is not None else registry.models_dir
    if out_dir.resolve() != registry.models_dir.resolve():
        _copy_models_dir(registry.models_dir, out_dir)
    return spec, source, out_dir


def install_variant(entry: dict[str, Any], staged: Path, target: Path, out_dir: Path) -> ModelSpec:
    """Write ``staged`` (with ``entry`` as its metadata) to ``target`` and its manifest
    entry into ``out_dir``; return the variant's spec, loaded back and checked."""
    entry = {k: v for k, v in entry.items() if k != "sha256"}
    _with_spec_metadata(staged, entry)
    _write_atomic(target, staged.read_bytes())
    write_manifest_entry(out_dir, ModelSpec.from_dict({**entry, "sha256": sha256_of(target)}, out_dir))
    check = Registry(out_dir)
    loaded = check.get(entry["name"])
    check.load(loaded)
    return loaded


def _copy_models_dir(source: Path, target: Path) -> None:
    """The manifest and every ONNX file of ``source`` into ``target`` (a scratch models dir)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in [source / MANIFEST_NAME, *sorted(source.glob("*.onnx"))]:
        if not (target / path.name).exists() or path.name == MANIFEST_NAME:
            shutil.copy2(path, target / path.name)


def main(argv: Sequence[str] | None = None) -> int:
    defaults = QuantizeOptions()
    parser = argparse.ArgumentParser(
        prog="python -m nnip.train.quantize",
        description="Write the int8 variant of a shipped model (onnxruntime static QDQ).",
    )
    parser.add_argument("name", help="model name in the manifest, e.g. upscale-fast")
    parser.add_argument("--models-dir", type=Path, help="where NAME is (default: the installed onnx_models/)")
    parser.add_argument("--out-dir", type=Path,
                        help="where NAME-int8.onnx and the manifest go (default: --models-dir); "
                        "another folder gets a copy of the models, to benchmark before shipping")
    parser.add_argument("--calibration", choices=CALIBRATIONS, default=defaults.calibration)
    parser.add_argument("--percentile", type=float, default=defaults.percentile)
    parser.add_argument("--float-convs", type=int, default=defaults.float_convs, metavar="N",
                        help="convolutions kept in float at each end (0: quantise all)")
    parser.add_argument("--float-nodes", default=defaults.float_nodes, metavar="A|B",
                        help="also keep nodes whose names hold one of these '|'-separated parts in float")
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    parser.add_argument("--symmetric", action="store_true", help="symmetric activation ranges")
    parser.add_argument("--samples", type=int, default=defaults.samples)
    parser.add_argument("--crop", type=int, default=defaults.crop, help="input crop side (pixels)")
    parser.add_argument("--images", type=int, default=defaults.images, help="training files to crop from")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--weights", type=Path, metavar="ONNX",
                        help="quantise this file of NAME's network instead (a quantisation-"
                        "aware fine-tune: python -m nnip.train.qat); measured against NAME")
    parser.add_argument("--recalibrate", action="store_true",
                        help="with --weights: calibrate every range, not the fine-tune's own")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # not onnxruntime's "consider pre-processing" advice
    try:
        options = QuantizeOptions(
            calibration=args.calibration, percentile=args.percentile,
            float_convs=args.float_convs, float_nodes=args.float_nodes, per_channel=not args.per_tensor,
            symmetric=args.symmetric, samples=args.samples, crop=args.crop,
            images=args.images, seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    command = "python -m nnip.train.quantize " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    out_dir = args.out_dir or resolve_models_dir(args.models_dir)
    spec = quantize_model(args.name, args.models_dir, out_dir, options, command=command,
                          weights=args.weights, use_trained_ranges=not args.recalibrate)
    print(json.dumps({"name": spec.name, "file": str(spec.path), "sha256": spec.sha256,
                      "metrics": dict(spec.metrics),
                      "float_nodes": spec.provenance["quantization"]["float_nodes"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
