"""onnxruntime behind ``--device``: execution providers, cached sessions, tiled runs.

One :class:`Engine` per process: it resolves the device once, opens one session per model
file (checked against the model's spec when opened) and runs models over images of any
size through :mod:`nnip.core.tiling`. Nothing here knows a model by name; everything comes
from the :class:`~nnip.core.models.ModelSpec`.

onnxruntime's own provider fallback is switched off: it prints to stdout (which would
corrupt ``--json``) and hides which device really runs. Instead a session that cannot start
on the requested provider is retried on the CPU alone, to tell a broken model
(:class:`ModelIntegrityError`) from a broken device (:class:`ProviderError`); ``auto`` then
steps down to the next device.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from nnip.core.errors import ModelError, ModelIntegrityError, ProviderError
from nnip.core.models import ModelSpec, Registry
from nnip.core.tiling import BatchFn, ProgressFn, TileSource, min_tile, plan_tiles, run_tiled, run_whole

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "DEVICES",
    "DEVICE_CHOICES",
    "AUTO_ORDER",
    "DEFAULT_TILE",
    "HALF_PRECISION_DEVICES",
    "PRECISION_CHOICES",
    "cpu_has_int8_dot",
    "available_devices",
    "resolve_providers",
    "device_of",
    "Engine",
]

#: ``--device`` name -> onnxruntime execution provider.
DEVICES: Mapping[str, str] = MappingProxyType({
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
})
#: What ``auto`` prefers, best first; the CPU is always last and always there.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "directml", "coreml", "openvino", "cpu")
#: Every value ``--device`` accepts.
DEVICE_CHOICES: tuple[str, ...] = ("auto",) + AUTO_ORDER
#: Devices on which a model's fp16 variant, when installed, runs in its place (``auto``).
HALF_PRECISION_DEVICES: frozenset[str] = frozenset({"cuda", "tensorrt"})
#: Every value ``--precision`` accepts; ``auto`` is :meth:`Engine.preferred_precision`.
PRECISION_CHOICES: tuple[str, ...] = ("auto", "fp32", "int8", "fp16")
#: /proc/cpuinfo flags of an 8-bit dot-product instruction, which makes int8 convolutions
#: faster than float ones (without it onnxruntime's int8 path can be slower: upscale-fast
#: v0.3's int8 file ran at 0.95x on a CPU where v0.4's gained 1.10x).
INT8_DOT_FLAGS: frozenset[str] = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
#: Context tile edge (input pixels) when ``Engine.run`` gets ``tile=None``. On the CPU the
#: cost per pixel hardly depends on the tile size (measured 128 to 1448 px: within 10 %), so
#: what tiling costs is the overlap: 768 keeps it at ~4-8 % for a margin of 10 and one
#: 32-channel activation at ~75 MB (benchmarks/engine_overhead.py: >= 85 % of whole-image
#: throughput on 2048 x 2048). Accelerators: fewer, larger tiles. A model whose margin makes
#: this overlap costly states its own tile in the manifest (``ModelSpec.tiles``: lens, 1536).
DEFAULT_TILE: Mapping[str, int] = MappingProxyType({"cpu": 768, "accelerator": 1024})


def _ort():
    # Imported on first use, not at import time: `nnip --help` stays instant.
    import onnxruntime

    return onnxruntime


def available_devices() -> list[str]:
    """Devices this onnxruntime build offers, best first (``cpu`` always included).

    A provider compiled in may still fail to start (missing CUDA/TensorRT libraries);
    :class:`Engine` finds that out when it opens a session.
    """
    providers = set(_ort().get_available_providers())
    return [d for d in AUTO_ORDER if d == "cpu" or DEVICES[d] in providers]


def resolve_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device``, in priority order, ending with the CPU.

    ``auto`` lists every available device in :data:`AUTO_ORDER`. ``tensorrt`` also lists
    CUDA (when available) for the nodes TensorRT does not take.

    Raises
    ------
    ProviderError
        ``device`` is unknown or not available in this onnxruntime build.
    """
    available = available_devices()
    if device == "auto":
        return [DEVICES[d] for d in available]
    if device not in DEVICES:
        raise ProviderError(
            f"unknown device {device!r} (choose from {', '.join(DEVICE_CHOICES)})"
        )
    if device not in available:
        raise ProviderError(
            f"device {device!r} is not available in this onnxruntime "
            f"(available: {', '.join(['auto'] + available)})"
        )
    chain = [device] + (["cuda"] if device == "tensorrt" and "cuda" in available else [])
    return [DEVICES[d] for d in chain] + ([] if device == "cpu" else [DEVICES["cpu"]])


def device_of(provider: str) -> str:
    """The ``--device`` name of an execution provider (the provider itself if unknown)."""
    for name, candidate in DEVICES.items():
        if candidate == provider:
            return name
    return provider


def _ort_errors() -> tuple[type[BaseException], ...]:
    """What onnxruntime raises for a bad model or a failing provider.

    Its pybind exception types (``InvalidProtobuf``, ``EPFail``, ...) derive straight from
    Exception; catching them by name keeps genuine bugs (TypeError, ...) visible.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    pybind = tuple(
        v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)
    )
    return pybind + (RuntimeError, ValueError, OSError)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """One line of an onnxruntime message, without its ``[ONNXRuntimeError] : 7 :`` prefix."""
    text = str(exc).strip().splitlines()
    line = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*", "", text[0] if text else "")
    line = line or type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class _Loaded:
    """An open session and how to feed it: graph input names in the spec's input order."""

    session: onnxruntime.InferenceSession
    input_names: tuple[str, ...]
    output_name: str


def _check_tensor(spec: ModelSpec, kind: str, index: int, meta, channels: int) -> None:
    problem = None
    if meta.type != "tensor(float)":
        problem = f"is {meta.type}, not tensor(float)"
    elif meta.shape is not None and len(meta.shape) != 4:
        problem = f"has rank {len(meta.shape)}, not 4 (NCHW)"
    elif meta.shape is not None and isinstance(meta.shape[1], int) and meta.shape[1] != channels:
        problem = f"has {meta.shape[1]} channels, the manifest says {channels}"
    if problem:
        raise ModelIntegrityError(
            f"model {spec.name!r} does not match its manifest: {kind} {index} "
            f"({meta.name!r}) {problem}"
        )


def _bind(spec: ModelSpec, session) -> _Loaded:
    """Check ``session``'s graph against ``spec``; map the spec's inputs to graph inputs.

    Inputs are matched by name when the graph's names are the manifest's names (in any
    order), else by position.
    """
    ins, outs = session.get_inputs(), session.get_outputs()
    for kind, graph, declared in (("inputs", ins, spec.inputs), ("outputs", outs, spec.outputs)):
        if len(graph) != len(declared):
            raise ModelIntegrityError(
                f"model {spec.name!r} does not match its manifest: the graph has "
                f"{len(graph)} {kind}, the manifest lists {len(declared)}"
            )
    by_name = {m.name: m for m in ins}
    if set(by_name) == {t.name for t in spec.inputs}:
        ordered = [by_name[t.name] for t in spec.inputs]
    else:
        ordered = list(ins)
    for i, (meta, tspec) in enumerate(zip(ordered, spec.inputs)):
        _check_tensor(spec, "input", i, meta, tspec.channels)
    for i, (meta, tspec) in enumerate(zip(outs, spec.outputs)):
        _check_tensor(spec, "output", i, meta, tspec.channels)
    return _Loaded(session, tuple(m.name for m in ordered), outs[0].name)


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has an 8-bit dot-product instruction (:data:`INT8_DOT_FLAGS`).

    ``cpuinfo`` is /proc/cpuinfo's text (read when None; no such file: False).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and INT8_DOT_FLAGS & set(value.split()):
            return True
    return False


@functools.cache
def _this_cpu_has_int8_dot() -> bool:
    return cpu_has_int8_dot()


class Engine:
    """Runs the models of a registry on one device, with one cached session per model file.

    Parameters
    ----------
    device : str
        One of :data:`DEVICE_CHOICES`; ``auto`` takes the best available.
    threads : int, optional
        onnxruntime intra-op threads; None lets onnxruntime choose (one per core).
    registry : Registry, optional
        Verifies model files (sha256) before they are opened; by default the registry of
        the default models directory, made when first needed.
    precision : str
        Which file of a model runs (:data:`PRECISION_CHOICES`): ``fp32`` the exported
        network itself (the default: what benchmarks and tests measure); ``int8`` or
        ``fp16`` that variant where one is installed; ``auto`` the device's best
        (:meth:`preferred_precision`). A variant only ships where its benchmark quality is
        within 0.05 dB of the fp32 model's; a model without the variant runs in fp32, and a
        variant asked for by name is never replaced.

    Raises
    ------
    ProviderError
        ``device`` is unknown or not available (raised here, before any work).
    """

    def __init__(
        self, device: str = "auto", threads: int | None = None, registry: Registry | None = None,
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISION_CHOICES)})")
        self.requested = device
        self.precision = precision
        self.threads = threads
        self._providers = resolve_providers(device)
        self._device = device_of(self._providers[0])
        self._registry = registry
        self._sessions: dict[str, onnxruntime.InferenceSession] = {}  # one per model file
        self._bound: dict[tuple[str, str], _Loaded] = {}  # per (file, manifest entry)
        # Sessions are opened once even when batch --jobs threads ask at the same time.
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """The device actually running: after a session opened, the one it runs on."""
        return self._device

    @property
    def default_tile(self) -> int:
        """Context tile edge used when :meth:`run` gets ``tile=None`` for a model that
        states none of its own (:meth:`tile_for`)."""
        return DEFAULT_TILE[self._tile_kind()]

    def tile_for(self, spec: ModelSpec) -> int:
        """Context tile edge for ``spec`` here: the model's own for this kind of device
        (manifest ``tiles``), else :attr:`default_tile`."""
        return int(spec.tiles.get(self._tile_kind(), self.default_tile))

    def _tile_kind(self) -> str:
        return "cpu" if self._device == "cpu" else "accelerator"

    def _options(self) -> onnxruntime.SessionOptions:
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: warnings would clutter the user's stderr
        # onnxruntime's pool threads spin between operators by default. The commands run
        # numpy work (the next tile's gather, the fidelity step, the develop's colour passes,
        # the JPEG encoder) on other threads beside the network: a spinning thread takes
        # their core while a descheduled one stalls its siblings at the next barrier.
        # Sleeping instead costs a lone session.run nothing measurable (768-px tiles, every
        # shipped model); whole commands in turns (benchmarks/before_after.py, 2026-11-27):
        # fast upscales ~3 % faster (24 MP 12.08 -> 11.74 s, 8 MP 4.48 -> 4.36 s, 0.7-1 CPU s
        # less), the 24 MP develop and the quality upscale unchanged.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def _open(
        self, spec: ModelSpec, path: str, providers: list[str]
    ) -> onnxruntime.InferenceSession:
        return _ort().InferenceSession(
            path, self._options(), providers=providers, enable_fallback=0
        )

    def _open_on_device(self, spec: ModelSpec, path: str) -> onnxruntime.InferenceSession:
        """Open ``path`` on the first provider of the chain that starts; see module doc."""
        providers = list(self._providers)
        while True:
            try:
                session = self._open(spec, path, providers)
            except _ort_errors() as exc:
                error = exc
            else:
                actual = device_of(session.get_providers()[0])
                if self.requested in ("auto", actual):
                    return session
                error = RuntimeError(f"onnxruntime started it on {actual} instead")
            if providers == [DEVICES["cpu"]]:
                raise ModelIntegrityError(
                    f"model {spec.name!r} cannot be opened: {_first_line(error)}"
                ) from None
            self._check_model_on_cpu(spec, path)
            if self.requested != "auto":
                raise ProviderError(
                    f"device {self.requested!r} failed to start: {_first_line(error)}"
                ) from None
            providers = providers[1:]

    def _check_model_on_cpu(self, spec: ModelSpec, path: str) -> None:
        """Raise ModelIntegrityError if the model does not open on the CPU either."""
        try:
            self._open(spec, path, [DEVICES["cpu"]])
        except _ort_errors() as exc:
            raise ModelIntegrityError(
                f"model {spec.name!r} cannot be opened: {_first_line(exc)}"
            ) from None

    def _get(self, spec: ModelSpec) -> _Loaded:
        if self._registry is None:
            self._registry = Registry()
        with self._lock:
            chosen = self.for_device(spec)
            loaded = self._load(chosen)
            # The device may have stepped down when the session opened (a GPU that did not
            # start, under auto): then run what the device it fell back to prefers.
            now = self.for_device(spec)
            return loaded if now is chosen else self._load(now)

    def preferred_precision(self) -> str:
        """What ``auto`` runs here: fp16 on CUDA/TensorRT, int8 on a CPU with an 8-bit
        dot-product instruction (:func:`cpu_has_int8_dot`), else fp32."""
        if self._device in HALF_PRECISION_DEVICES:
            return "fp16"
        if self._device == "cpu" and _this_cpu_has_int8_dot():
            return "int8"
        return "fp32"

    def for_device(self, spec: ModelSpec) -> ModelSpec:
        """The file that runs for ``spec`` here under this engine's precision (see the
        class doc): ``spec`` itself or its installed variant of that precision."""
        if spec.variant_of or spec.precision != "fp32" or self._registry is None:
            return spec
        wanted = self.preferred_precision() if self.precision == "auto" else self.precision
        if wanted == "fp32":
            return spec
        try:
            return self._registry.with_precision(spec, wanted)
        except ModelError:
            return spec

    def _load(self, spec: ModelSpec) -> _Loaded:
        path = str(self._registry.load(spec))
        if path not in self._sessions:
            session = self._open_on_device(spec, path)
            self._device = device_of(session.get_providers()[0])
            self._sessions[path] = session
        key = (path, spec.name)
        if key not in self._bound:
            self._bound[key] = _bind(spec, self._sessions[path])
        return self._bound[key]

    def session(self, spec: ModelSpec) -> onnxruntime.InferenceSession:
        """The onnxruntime session for ``spec``, opened and checked on first use.

        Raises
        ------
        ModelIntegrityError
            The file is missing, corrupt (sha256), not a loadable ONNX graph, or its
            inputs/outputs do not match the spec (count, float32 NCHW, static channels).
        ProviderError
            The requested device does not start.
        """
        return self._get(spec).session

    def _batch_fn(self, spec: ModelSpec) -> BatchFn:
        loaded = self._get(spec)

        def run_batch(arrays: list[np.ndarray]) -> np.ndarray:
            feed = dict(zip(loaded.input_names, arrays))
            return loaded.session.run([loaded.output_name], feed)[0]

        return run_batch

    def _check_inputs(self, spec: ModelSpec, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        # A wrong input list is a bug in the calling stage, not a user problem: ValueError.
        if len(inputs) != len(spec.inputs):
            raise ValueError(f"model {spec.name!r} takes {len(spec.inputs)} inputs, got {len(inputs)}")
        arrays = [a if isinstance(a, TileSource) else np.asarray(a, dtype=np.float32)
                  for a in inputs]
        for array, tspec in zip(arrays, spec.inputs):
            if len(array.shape) != 3 or array.shape[0] != tspec.channels:
                raise ValueError(
                    f"model {spec.name!r} input {tspec.name!r} wants ({tspec.channels}, H, W), "
                    f"got {array.shape}"
                )
        return arrays

    def run(
        self,
        spec: ModelSpec,
        inputs: Sequence[np.ndarray],
        *,
        tile: int | None = None,
        batch: int = 1,
        progress: ProgressFn | None = None,
        release: bool | None = None,
        rows: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Run ``spec``'s model over images of any size, tiled (equals :meth:`run_whole`).

        Parameters
        ----------
        spec : ModelSpec
            The model; its ``margin``, ``align`` and ``scale`` drive the tiling.
        inputs : sequence of ndarray, float32, shape (C_i, H, W), or ``TileSource``
            The model's inputs in manifest order, all the same H, W; channels, range and
            transfer function as the spec's inputs state.
        tile : int, optional
            Largest context tile edge in input pixels (overlap included), at least
            ``2 * margin + 1``; None: :meth:`tile_for` (the model's own, else
            :attr:`default_tile`).
        batch : int
            Same-shaped tiles per session call.
        progress : callable, optional
            ``progress(done, total)`` after each tile.
        release : bool, optional
            Afterwards, :meth:`release` the memory the session's arena kept. None (the
            default): release after runs of more than one tile (large images, whose arena
            is a full tile's activations), keep it after a one-tile run (a small image:
            small arena, and the next image reuses it without faulting pages in). False
            for callers that run the model again at once (an upscale's bands).
        rows : (top, bottom), optional
            Only input rows ``[top, bottom)``, the rows around them serving as real
            context (see :func:`nnip.core.tiling.run_tiled`); None: all rows.

        Returns
        -------
        ndarray, float32, shape (C_out, (bottom - top) * scale, W * scale)
            The spec's first output, as the model gives it (not clipped); all rows
            (``H * scale``) without ``rows``.

        Raises
        ------
        ModelError
            ``tile`` is too small to leave a core with this model's margin.
        """
        arrays = self._check_inputs(spec, inputs)
        tile = self.tile_for(spec) if tile is None else tile
        smallest = min_tile(spec.margin, spec.align)
        if tile < smallest:
            raise ModelError(
                f"tile {tile} is too small for model {spec.name!r} "
                f"(minimum {smallest}: twice its margin {spec.margin} plus one)"
            )
        out = run_tiled(
            self._batch_fn(spec), arrays,
            scale=spec.scale, margin=spec.margin, align=spec.align,
            out_channels=spec.outputs[0].channels, tile=tile, batch=batch, progress=progress,
            rows=rows,
        )
        if release is None:
            height, width = arrays[0].shape[-2:]
            release = len(plan_tiles(height, width, tile, spec.margin, spec.align)) > 1
        if release:
            self.release(spec)
        return out

    def release(self, spec: ModelSpec) -> None:
        """Give back to the system the memory onnxruntime's CPU arena keeps for ``spec``.

        After a run the arena keeps the largest tile's activations (for a width-56 demosaic
        at tile 768, hundreds of MB), and every model's session has its own arena: a develop
        with denoise and demosaic held both at once. One tiny run with arena shrinkage frees
        the chunks nothing uses. Measured on a 24 MP denoise + demosaic v4 develop
        (2026-11-26): peak RSS 2161 -> 1147 MiB when shrinking after every tile, which
        cost 1-2 s; 1368 MiB once per stage (benchmarks/develop_speed.py), for a few
        milliseconds. On one-tile images the next image's run faulted the freed pages in
        again (demosaic on Kodak24: 1.97x demosaicnet's speed with a release per image,
        2.17x without; benchmarks/demosaic_quality.py), hence
        :meth:`run`'s default of releasing only after several tiles.
        """
        loaded = self._get(spec)
        size = min_tile(spec.margin, spec.align)
        feed = {name: np.zeros((1, tensor.channels, size, size), dtype=np.float32)
                for name, tensor in zip(loaded.input_names, spec.inputs)}
        options = _ort().RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        loaded.session.run([loaded.output_name], feed, options)

    def run_whole(self, spec: ModelSpec, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """One session call on the whole image reflect-padded by the margin (the reference).

        Same contract as :meth:`run`; memory grows with the image (all activations at once).
        """
        arrays = self._check_inputs(spec, inputs)
        return run_whole(
            self._batch_fn(spec), arrays,
            scale=spec.scale, margin=spec.margin, align=spec.align,
            out_channels=spec.outputs[0].channels,
        )
