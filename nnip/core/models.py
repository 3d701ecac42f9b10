"""Model registry: ``manifest.json`` -> :class:`ModelSpec`, with sha256 and spec checks.

The manifest is the single description of every shipped network. Everything the engine,
the tiler and the stages need (channel layout, value range, scale, receptive-field margin,
alignment, conditioning inputs) is read from here: no model name is special-cased in code.

Manifest layout (``onnx_models/manifest.json``)::

    {"format_version": 1,
     "models": [
       {"name": "upscale-fast", "task": "upscale", "version": "1", "file": "upscale-fast.onnx",
        "sha256": "...",
        "inputs":  [{"name": "image", "channels": 3, "layout": "rgb",
                     "range": [0, 1], "transfer": "srgb", "description": "..."}],
        "outputs": [{"name": "output", "channels": 3, "layout": "rgb",
                     "range": [0, 1], "transfer": "srgb"}],
        "scale": 2, "margin": 9, "align": 1, "gflop_per_mp": 83.1, "params": 41000,
        "provenance": {"data": "...", "command": "...", "commit": "..."},
        "metrics": {"val_psnr_db": 36.1},
        "description": "..."}]}

A *variant* is another file of the same network, e.g. its int8 quantisation: an entry with
``"variant_of": "upscale-fast", "precision": "int8"`` (named ``upscale-fast-int8`` by
convention). It is chosen by its own name or by :meth:`Registry.find` with ``precision``;
a task's default model is never a variant. Entries without these keys are ``fp32``
originals.

The models directory is, in order: an explicit ``models_dir`` argument (``--models-dir``),
the ``NNIP_MODELS_DIR`` environment variable, else the installed ``onnx_models`` package.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from nnip.core.errors import ModelError, ModelIntegrityError, ModelNotFoundError
from nnip.core.tiling import min_tile

__all__ = [
    "TASKS",
    "PRECISIONS",
    "TensorSpec",
    "ModelSpec",
    "Registry",
    "default_models_dir",
    "resolve_models_dir",
    "sha256_of",
    "find_model",
    "models_table",
]

#: Tasks a model may serve; a joint raw model names its tasks with "+", e.g. "denoise+demosaic".
TASKS = ("upscale", "demosaic", "denoise", "lens")

#: Numeric precisions a model file may have; ``fp32`` is the exported network itself.
PRECISIONS = ("fp32", "int8", "fp16")

MODELS_DIR_ENV = "NNIP_MODELS_DIR"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a model, NCHW float32.

    ``layout`` says what the channels are: ``rgb``, ``grey``, ``bayer_packed`` (4 channels
    at half resolution in the order R, G1, G2, B after phase normalisation), ``noise_sigma``
    (per-pixel noise standard deviation), ``optics`` (conditioning map), ... ``transfer`` is
    ``srgb`` or ``linear``; ``range`` the nominal value range of the data.
    """

    name: str
    channels: int
    layout: str
    range: tuple[float, float] = (0.0, 1.0)
    transfer: str = "linear"
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpec":
        return cls(
            name=str(data["name"]),
            channels=int(data["channels"]),
            layout=str(data["layout"]),
            range=tuple(float(v) for v in data.get("range", (0.0, 1.0))),  # type: ignore[arg-type]
            transfer=str(data.get("transfer", "linear")),
            description=str(data.get("description", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channels": self.channels,
            "layout": self.layout,
            "range": list(self.range),
            "transfer": self.transfer,
            "description": self.description,
        }


@dataclass(frozen=True)
class ModelSpec:
    """A shipped network as the manifest describes it.

    ``margin`` is the receptive-field radius in input pixels, measured from the impulse
    response at export: an output pixel depends on input pixels at most ``margin`` away.
    It sets the tile overlap. ``align``: tile origins and sizes are multiples of it (2 on a
    mosaic, or the total stride of a network that downsamples inside). ``scale``: output
    pixels per input pixel along each axis. ``tiles``: the context tile edge this model
    runs fastest at per device kind (``cpu``, ``accelerator``) within its memory bars,
    where that differs from :data:`nnip.core.engine.DEFAULT_TILE` (a large margin makes
    the default's overlap costly; benchmarks/tile_sizes.py measures it).
    """

    name: str
    task: str
    version: str
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    scale: int = 1
    margin: int = 0
    align: int = 1
    gflop_per_mp: float = 0.0
    params: int = 0
    provenance: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    variant_of: str = ""  # the original this file is a variant of ("" for an original)
    precision: str = "fp32"
    tiles: Mapping[str, int] = field(default_factory=dict)
    path: Path | None = None  # resolved file location; not part of the manifest entry

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.task.split("+"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], models_dir: Path | None = None) -> "ModelSpec":
        try:
            spec = cls(
                name=str(data["name"]),
                task=str(data["task"]),
                version=str(data.get("version", "1")),
                file=str(data["file"]),
                sha256=str(data["sha256"]).lower(),
                inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
                scale=int(data.get("scale", 1)),
                margin=int(data.get("margin", 0)),
                align=int(data.get("align", 1)),
                gflop_per_mp=float(data.get("gflop_per_mp", 0.0)),
                params=int(data.get("params", 0)),
                provenance=dict(data.get("provenance", {})),
                metrics=dict(data.get("metrics", {})),
                description=str(data.get("description", "")),
                variant_of=str(data.get("variant_of", "")),
                precision=str(data.get("precision", "fp32")),
                tiles={str(k): int(v) for k, v in dict(data.get("tiles", {})).items()},
                path=(models_dir / str(data["file"])) if models_dir is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = data.get("name", "?") if isinstance(data, Mapping) else "?"
            raise ModelError(f"manifest entry {name!r} is malformed: {exc!r}") from None
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        # Variant keys only where they say something: originals' entries stay as exported.
        variant = (
            {"variant_of": self.variant_of, "precision": self.precision}
            if self.variant_of or self.precision != "fp32" else {}
        )
        tiles = {"tiles": dict(self.tiles)} if self.tiles else {}
        return {
            "name": self.name,
            "task": self.task,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "scale": self.scale,
            "margin": self.margin,
            "align": self.align,
            "gflop_per_mp": self.gflop_per_mp,
            "params": self.params,
            "provenance": dict(self.provenance),
            "metrics": dict(self.metrics),
            "description": self.description,
            **tiles,
            **variant,
        }

    def validate(self) -> None:
        """Check the spec's own invariants; raise :class:`ModelError` naming the model."""
        problems = []
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            problems.append(f"unknown task {'+'.join(unknown)!r} (known: {', '.join(TASKS)})")
        if self.scale < 1:
            problems.append(f"scale {self.scale} < 1")
        if self.margin < 0:
            problems.append(f"margin {self.margin} < 0")
        if self.align < 1:
            problems.append(f"align {self.align} < 1")
        if not self.inputs or not self.outputs:
            problems.append("needs at least one input and one output")
        if len(self.sha256) != 64:
            problems.append("sha256 is not 64 hex digits")
        smallest = min_tile(self.margin, self.align)  # what Engine.run accepts
        bad_tiles = {k: v for k, v in self.tiles.items()
                     if k not in ("cpu", "accelerator") or v < smallest}
        if bad_tiles:
            problems.append(f"tiles {bad_tiles} (kinds: cpu, accelerator; at least {smallest})")
        if self.precision not in PRECISIONS:
            known = ", ".join(PRECISIONS)
            problems.append(f"unknown precision {self.precision!r} (known: {known})")
        if problems:
            raise ModelError(f"model {self.name!r}: " + "; ".join(problems))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def default_models_dir() -> Path:
    """The ``onnx_models`` directory installed with the package (works for non-editable installs)."""
    return Path(str(resources.files("onnx_models")))


def resolve_models_dir(models_dir: str | os.PathLike[str] | None = None) -> Path:
    if models_dir is not None:
        return Path(models_dir)
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env)
    return default_models_dir()


class Registry:
    """The models of one models directory, read from its manifest.

    Reading the manifest is cheap; a model file is hashed and checked only when
    :meth:`load` asks for it (once per process per file).
    """

    def __init__(self, models_dir: str | os.PathLike[str] | None = None) -> None:
        self.models_dir = resolve_models_dir(models_dir)
        self._specs = self._read_manifest()
        self._verified: set[str] = set()

    def _read_manifest(self) -> dict[str, ModelSpec]:
        manifest = self.models_dir / MANIFEST_NAME
        if not self.models_dir.is_dir():
            raise ModelError(f"models directory {self.models_dir} does not exist")
        if not manifest.is_file():
            raise ModelError(f"no {MANIFEST_NAME} in models directory {self.models_dir}")
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {manifest}: {exc}") from None
        specs: dict[str, ModelSpec] = {}
        for entry in data.get("models", []):
            spec = ModelSpec.from_dict(entry, self.models_dir)
            if spec.name in specs:
                raise ModelError(f"{manifest}: model {spec.name!r} is listed twice")
            specs[spec.name] = spec
        return specs

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs) or "none"
            raise ModelNotFoundError(
                f"no model named {name!r} in {self.models_dir} (installed: {known})"
            ) from None

    def for_task(self, task: str) -> list[ModelSpec]:
        """Models serving ``task`` alone (a joint model is found by its full task name)."""
        return [s for s in self._specs.values() if s.task == task]

    def find(self, task: str, name: str | None = None, precision: str | None = None) -> ModelSpec:
        """The model named ``name`` (which must serve ``task``), or the first one for ``task``.

        ``name`` may also be a short alias: ``fast`` finds ``upscale-fast`` for task upscale,
        ``fast-int8`` its int8 variant. The default (``name`` None) is the first original
        (not a variant) for ``task``. ``precision`` (``fp32``, ``int8``) then picks that
        precision of the model found: itself, or its variant of that precision.
        """
        if name is None:
            candidates = self.for_task(task)
            originals = [s for s in candidates if not s.variant_of]
            if not candidates:
                raise ModelNotFoundError(
                    f"no model for task {task!r} installed in {self.models_dir}"
                )
            spec = (originals or candidates)[0]
        else:
            full = name if name in self._specs else f"{task}-{name}"
            spec = self.get(full if full in self._specs else name)
        if task not in spec.tasks:
            raise ModelNotFoundError(f"model {spec.name!r} serves {spec.task!r}, not {task!r}")
        return spec if precision is None else self.with_precision(spec, precision)

    def with_precision(self, spec: ModelSpec, precision: str) -> ModelSpec:
        """``spec`` in ``precision``: itself, its original, or a sibling variant."""
        if spec.precision == precision:
            return spec
        original = spec.variant_of or spec.name
        family = [s for s in self._specs.values() if s.name == original or s.variant_of == original]
        for candidate in family:
            if candidate.precision == precision:
                return candidate
        have = ", ".join(f"{s.name} ({s.precision})" for s in family)
        raise ModelNotFoundError(
            f"model {original!r} has no {precision} version in {self.models_dir} "
            f"(installed: {have})"
        )

    def load(self, spec: ModelSpec) -> Path:
        """Path of ``spec``'s ONNX file after checking it exists and matches its sha256."""
        path = spec.path if spec.path is not None else self.models_dir / spec.file
        if str(path) in self._verified:
            return path
        if not path.is_file():
            raise ModelIntegrityError(f"model {spec.name!r}: file {path} is missing")
        digest = sha256_of(path)
        if digest != spec.sha256:
            raise ModelIntegrityError(
                f"model {spec.name!r}: {path} is corrupt (sha256 {digest[:12]}..., "
                f"manifest says {spec.sha256[:12]}...)"
            )
        self._verified.add(str(path))
        return path


def find_model(
    task: str, name: str | None = None, registry: Registry | None = None, *, optional: bool = False
) -> ModelSpec | None:
    """``registry.find(task, name)`` (default registry when None), or None when ``optional``
    and the model, the manifest or the models directory is missing.

    Raises
    ------
    ModelNotFoundError
        Not ``optional`` and no such model (also for a missing directory or manifest).
    """
    try:
        return (registry if registry is not None else Registry()).find(task, name)
    except ModelNotFoundError:
        if optional:
            return None
        raise
    except ModelError as exc:  # no models directory or manifest at all
        if optional:
            return None
        raise ModelNotFoundError(f"no model for task {task!r} installed ({exc})") from None


def _number_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def _metrics_text(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_number_text(v)}" for k, v in metrics.items()) or "-"


def _params_text(params: int) -> str:
    if params >= 1_000_000:
        return f"{params / 1e6:.1f}M"
    if params >= 1_000:
        return f"{params / 1e3:.1f}k"
    return str(params)


def models_table(specs: "Iterable[ModelSpec]", *, markdown: bool = False) -> list[str]:
    """The models as text lines: aligned columns, or a Markdown table (README's models table)."""
    header = ("name", "task", "version", "GFLOP/MP", "params", "margin", "metrics")
    rows = [
        (s.name, s.task, s.version, f"{s.gflop_per_mp:g}", _params_text(s.params),
         str(s.margin), _metrics_text(s.metrics))
        for s in specs
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
        for row in (header, *rows)
    ]
