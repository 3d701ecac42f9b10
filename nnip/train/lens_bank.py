"""A bank of optically degraded crops for the lens task: the optics once, the sensor every time.

Why. A training pair of :mod:`nnip.train.lens_task` spends nearly all its time on the
lens (per-zone PSFs, field-varying blur, lateral CA) and on the synthetic patterns; the
sensor side (OLPF, mosaic, noise, quantisation, Malvar demosaic, encoding) is a few
milliseconds. So the expensive part is computed once per *bank entry* and reused, and
everything cheap is drawn fresh for every sample (``benchmarks/lens_data.py`` measures
both paths).

What an entry holds (:class:`BankEntry`): a clean crop (photo teacher or synthetic pattern,
:func:`~nnip.train.lens_task.random_clean_crop`) of ``bank_side`` pixels (a photo teacher
smaller than that gives its shorter side, down to ``patch + 2 context``, so the small
CBSD432 teachers stay in the mix as in the per-pair path), seen by a random camera
(:func:`~nnip.simulate.color.random_camera_matrix`, D65, exposure 1) through a random lens
at a random field position (the task's ``random_lens`` / ``random_field``); float16:

- ``blurred``: linear camera RGB after the lens, before OLPF, noise and clipping (lights
  stay far above white);
- ``sharp``: the same before the lens: the target before exposure and clipping;
- the lens, the field (optical centre in the entry's pixels, corner radius), the camera
  matrix, and the ``margin`` (the config's ``context``): the blur of pixels that close to
  the border saw the reflected padding, so a patch never lies there; only the demosaic's
  support around a patch may, as in the per-pair simulation.

What each sample draws afresh (:func:`bank_sample`), and why each is exact, not an
approximation of the per-pair simulation (:func:`~nnip.simulate.pairs.raw_pair`):

- a patch anywhere in the entry at least ``margin`` from its border, with
  :data:`SAMPLE_CONTEXT` pixels of demosaic support around it; the optics map is computed
  for the patch's own position, so field radius and angle stay true;
- one of the 8 dihedral transforms, the optical centre transformed alike. The lens model
  is symmetric under every rotation and mirror through the optical axis (radially oriented
  elliptical aberration, circular diffraction and defocus, radial CA, no decentring), so
  the transformed crop is exactly what the same lens makes of the transformed scene. It is
  applied to linear RGB before the colour filter array: the Bayer phase is untouched;
- exposure (-2..+0.5 EV) and the illuminant, both per-channel gains, which commute with
  the lens (every lens operation acts on each colour plane alone) and the OLPF. The
  illuminant (D65 in half the draws, else 2800..7500 K) relights the D65 entry by the gains
  ``M xyz(light) / M xyz(D65)``: a white lands exactly where the per-pair simulation puts
  it and the white balance (``illuminant_wb``) is exact; other colours are adapted von
  Kries-style in camera space, not Bradford-style in XYZ (a plausible camera either way).
  The camera matrix stays the entry's: a 3 x 3 mix does not commute with the per-channel
  diffraction and CA;
- the OLPF (none in 30 %, else 0.3..1 px), on the crop with its support;
- sensor clipping at white, Poisson-Gaussian noise of a random sensor at an ISO
  log-uniform in ``iso_range``, 14-bit quantisation, the configured demosaic (``malvar``;
  ``nn`` runs the demosaic model through the engine once per sample, by far the dearest
  step then, which takes much of the saving back), the sRGB encoding, ``blind_fraction``.

Filling. The bank lives under ``runs/cache/lens-bank/v<BANK_VERSION>-<key>/`` (beside the
teacher cache), ``key`` a digest of everything an entry depends on (:data:`BANK_KEYS` and
the training files), in chunks of up to :data:`CHUNK_ENTRIES` entries of one side S:
``<chunk>.pixels.npy`` (float16 (n, 2, S, S, 3): blurred, sharp) and ``<chunk>.meta.npy``
(:data:`ENTRY_META`), the meta written last, so a chunk is complete when its meta exists;
chunks are memory-mapped. A 288 px entry takes 1 MB (4000 of them, 4 GB).

The loader (:class:`BankBatches`) builds one new entry per ``bank_reuse`` samples while the
bank holds fewer than ``bank_entries``; each new entry is used once in the batch it was
built for, the rest of the batch is drawn from the whole bank. A fresh machine trains from
an empty bank (the first batch is all fresh, later ones mostly reused); a resumed or later
run reuses what is on disk; a full bank costs no optics at all. Entries a loader built but
had not yet written (under :data:`CHUNK_ENTRIES`) are lost when the run ends.
``python -m nnip.train.lens_bank --config fast --entries N`` fills the bank beforehand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from nnip.core.batch import atomic_write
from nnip.develop.colour import encode_transfer
from nnip.develop.optics import BLIND_AIRY_PX, airy_radius_px, optics_planes
from nnip.simulate.color import (
    D65_XY,
    cct_to_xy,
    camera_neutral,
    illuminant_wb,
    random_camera_matrix,
    random_exposure,
    scene_to_camera,
    srgb_to_linear,
    xy_to_xyz,
)
from nnip.simulate.optics import Field, LensParams, apply_lens
from nnip.simulate.pairs import default_black_level
from nnip.simulate.sensor import (
    add_noise,
    mosaic_bayer,
    NoiseModel,
    noise_model_for_iso,
    normalize_raw,
    olpf,
    quantize,
)
from nnip.train.data import PatchSampler, TeacherCache, training_split
from nnip.train.lens_task import (
    demosaicker,
    denoiser,
    lens_sampler,
    random_clean_crop,
    random_field,
    random_illuminant,
    random_iso,
    random_lens,
    random_sensor,
)

__all__ = [
    "BANK_VERSION",
    "BANK_KEYS",
    "CHUNK_ENTRIES",
    "SAMPLE_CONTEXT",
    "ENTRY_META",
    "BankEntry",
    "build_entry",
    "random_entry",
    "usable_illuminant",
    "bank_directory",
    "stored_entries",
    "LensBank",
    "dihedral",
    "dihedral_point",
    "relight_gains",
    "bank_sample",
    "random_sample",
    "check_bank_config",
    "BankBatches",
    "main",
]

log = logging.getLogger(__name__)

#: Raise when what an entry holds or how it is simulated changes: old banks are then unused.
BANK_VERSION = 1
#: Config keys an entry depends on (with the training files they make the bank's key).
BANK_KEYS = ("bank_side", "patch", "context", "pattern_fraction", "fnumber_range",
             "pitch_range_um", "aberration_max_px", "defocus_fraction", "defocus_max_px",
             "ca_max_px", "frame_radius_px", "flat_threshold", "flat_keep")
#: Entries per chunk file.
CHUNK_ENTRIES = 16
#: Pixels of demosaic support around a sample's patch, cut after the demosaic: the Malvar
#: kernel reaches 2 px, the OLPF's reflected border a few more. At most ``context``.
SAMPLE_CONTEXT = 8
#: Per-entry values stored beside the pixels.
ENTRY_META = np.dtype([
    ("fnumber", "f8"), ("pitch_um", "f8"), ("aberration_px", "f8"), ("defocus_px", "f8"),
    ("ca_red_px", "f8"), ("ca_blue_px", "f8"),
    ("cy", "f8"), ("cx", "f8"), ("r_corner", "f8"), ("cam_from_xyz", "f8", (3, 3)),
    ("margin", "i4"),
])

_FLOAT16_MAX = 65000.0  # lights are clipped here rather than overflowing to inf
_RAW_BITS = 14

Demosaic = Callable[[np.ndarray, Sequence[float]], np.ndarray]
Denoise = Callable[[np.ndarray, NoiseModel], np.ndarray]


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class BankEntry:
    """One bank entry (module notes). Arrays are float16 (S, S, 3), maybe memory-mapped.

    ``field`` has the optical centre in the entry's pixel coordinates; patches keep
    ``margin`` pixels from the border.
    """

    blurred: np.ndarray
    sharp: np.ndarray
    lens: LensParams
    field: Field
    cam_from_xyz: np.ndarray
    margin: int

    @property
    def side(self) -> int:
        return int(self.blurred.shape[0])

    def meta(self) -> np.ndarray:
        """The entry's :data:`ENTRY_META` record (a 0-d structured array)."""
        record = np.zeros((), dtype=ENTRY_META)
        lens, field = self.lens, self.field
        for name, value in (("fnumber", lens.fnumber), ("pitch_um", lens.pixel_pitch_um),
                            ("aberration_px", lens.aberration_px), ("defocus_px", lens.defocus_px),
                            ("ca_red_px", lens.ca_red_px), ("ca_blue_px", lens.ca_blue_px),
                            ("cy", field.cy), ("cx", field.cx), ("r_corner", field.r_corner),
                            ("cam_from_xyz", self.cam_from_xyz), ("margin", self.margin)):
            record[name] = value
        return record

    @classmethod
    def from_arrays(cls, pixels: np.ndarray, meta: np.ndarray) -> "BankEntry":
        """From a chunk's (2, S, S, 3) pixels and its :data:`ENTRY_META` record."""
        lens = LensParams(
            fnumber=float(meta["fnumber"]), pixel_pitch_um=float(meta["pitch_um"]),
            aberration_px=float(meta["aberration_px"]), defocus_px=float(meta["defocus_px"]),
            ca_red_px=float(meta["ca_red_px"]), ca_blue_px=float(meta["ca_blue_px"]))
        field = Field(float(meta["cy"]), float(meta["cx"]), float(meta["r_corner"]))
        return cls(pixels[0], pixels[1], lens, field,
                   np.array(meta["cam_from_xyz"], dtype=np.float64), int(meta["margin"]))


def _half(linear: np.ndarray) -> np.ndarray:
    return np.clip(linear, -_FLOAT16_MAX, _FLOAT16_MAX).astype(np.float16)


def build_entry(clean_srgb: np.ndarray, rng: np.random.Generator, *, lens: LensParams,
                field: Field, cam_from_xyz: np.ndarray, margin: int) -> BankEntry:
    """The optics of one capture of a clean crop (module notes).

    Parameters
    ----------
    clean_srgb : ndarray, float32, (S, S, 3), sRGB-encoded, lights above 1; ``field``
        places it in the frame.
    lens, cam_from_xyz : the optics and the camera (the scene is lit by D65, exposure 1).
    margin : int
        Border whose blur saw the padding (the task's ``context``).
    """
    camera = scene_to_camera(srgb_to_linear(np.asarray(clean_srgb, dtype=np.float32)), cam_from_xyz)
    blurred = apply_lens(camera, lens, rng, field=field)
    return BankEntry(_half(blurred), _half(camera), lens, field,
                     np.asarray(cam_from_xyz, dtype=np.float64), int(margin))


def random_entry(sampler: PatchSampler | None, config: Mapping[str, Any],
                 rng: np.random.Generator) -> BankEntry:
    """An entry drawn as the per-pair simulation draws its clean crop, camera, lens, field."""
    context, side = int(config["context"]), int(config["bank_side"])
    fraction = float(config["pattern_fraction"]) if sampler is not None else 1.0
    crop = random_clean_crop(sampler, fraction, side, rng,
                             min_size=int(config["patch"]) + 2 * context)
    return build_entry(crop, rng, lens=random_lens(rng, config),
                       field=random_field(rng, crop.shape[0], config["frame_radius_px"]),
                       cam_from_xyz=random_camera_matrix(rng), margin=context)


# --------------------------------------------------------------------------- the store


def bank_directory(root: Path, config: Mapping[str, Any], train_files: Sequence[Path]) -> Path:
    """``root/v<BANK_VERSION>-<key>``: the bank of this config and these training files.

    The key is a digest of :data:`BANK_KEYS` and each file's resolved path and size;
    ``bank.json`` in the directory says what went into it (written once).
    """
    files = sorted(f"{Path(p).resolve()}|{Path(p).stat().st_size}" for p in train_files)
    described = {
        "version": BANK_VERSION,
        "config": {key: config[key] for key in BANK_KEYS},
        "files": len(files),
        "files_sha1": hashlib.sha1("\n".join(files).encode()).hexdigest(),
    }
    text = json.dumps(described, sort_keys=True, default=list)
    directory = Path(root) / f"v{BANK_VERSION}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    if not (directory / "bank.json").is_file():
        atomic_write(directory / "bank.json",
                     lambda tmp: tmp.write_text(json.dumps(described, indent=1, default=list)))
    return directory


def stored_entries(directory: Path) -> int:
    """Entries in the complete chunks of a bank directory (0 when there is none)."""
    total = 0
    for meta_path in Path(directory).glob("*.meta.npy"):
        try:
            total += len(np.load(meta_path))
        except (OSError, ValueError):
            continue
    return total


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    atomic_write(path, write)


class LensBank:
    """The entries of one bank directory, plus those added since and not yet written.

    Chunks already in ``directory`` (created when missing) are memory-mapped; unreadable
    ones are skipped with a warning.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (pixels, meta)
        self._index: list[tuple[int, int]] = []  # (chunk, row) of each stored entry
        self._pending: list[BankEntry] = []
        for meta_path in sorted(self.directory.glob("*.meta.npy")):
            self._open_chunk(meta_path)

    def __len__(self) -> int:
        return len(self._index) + len(self._pending)

    @property
    def stored(self) -> int:
        """Entries in chunks on disk (this bank's view)."""
        return len(self._index)

    def _open_chunk(self, meta_path: Path) -> None:
        pixels_path = meta_path.with_name(meta_path.name.replace(".meta.npy", ".pixels.npy"))
        try:
            meta = np.load(meta_path)
            pixels = np.load(pixels_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable bank chunk skipped (%s)", meta_path, exc)
            return
        if (pixels.ndim != 5 or pixels.shape[1] != 2 or pixels.shape[4] != 3
                or len(pixels) != len(meta) or meta.dtype != ENTRY_META):
            log.warning("%s: bank chunk of shape %s skipped", pixels_path, pixels.shape)
            return
        chunk = len(self._chunks)
        self._chunks.append((pixels, meta))
        self._index.extend((chunk, row) for row in range(len(meta)))

    def entry(self, index: int) -> BankEntry:
        """Entry ``index``: stored entries first, then pending ones."""
        if index >= len(self._index):
            return self._pending[index - len(self._index)]
        chunk, row = self._index[index]
        pixels, meta = self._chunks[chunk]
        return BankEntry.from_arrays(pixels[row], meta[row])

    def add(self, entry: BankEntry) -> None:
        """Keep ``entry``; pending entries are written once a chunk's worth is waiting."""
        self._pending.append(entry)
        if len(self._pending) >= CHUNK_ENTRIES:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries (one chunk per side, meta last) and map them back.

        Indices of pending entries may change (entries of several sides are regrouped).
        """
        pending, self._pending = self._pending, []
        by_side: dict[int, list[BankEntry]] = {}
        for entry in pending:
            by_side.setdefault(entry.side, []).append(entry)
        self.directory.mkdir(parents=True, exist_ok=True)
        for entries in by_side.values():
            name = f"chunk-{uuid.uuid4().hex[:12]}"
            pixels = np.stack([np.stack([e.blurred, e.sharp]) for e in entries])
            meta = np.stack([e.meta() for e in entries])
            _save_npy(self.directory / f"{name}.pixels.npy", pixels)
            _save_npy(self.directory / f"{name}.meta.npy", meta)
            self._open_chunk(self.directory / f"{name}.meta.npy")


# --------------------------------------------------------------------------- samples


def dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """Transform ``0..7``: ``transform % 4`` quarter turns (np.rot90), then a left-right
    mirror when ``transform >= 4``."""
    image = np.rot90(image, transform % 4)
    return image[:, ::-1] if transform >= 4 else image


def dihedral_point(y: float, x: float, size: int, transform: int) -> tuple[float, float]:
    """Where the point (``y``, ``x``) of a ``size``-square image goes under :func:`dihedral`."""
    last = size - 1
    for _ in range(transform % 4):
        y, x = last - x, y  # np.rot90: out[i, j] = in[j, last - i]
    return (y, last - x) if transform >= 4 else (y, x)


def relight_gains(cam_from_xyz: np.ndarray, illuminant: float | None) -> np.ndarray:
    """Camera-RGB gains relighting a D65 capture by ``illuminant`` (kelvin; None: D65).

    A white then reads ``cam_from_xyz @ xyz(illuminant)``, as in the per-pair simulation.
    """
    if illuminant is None:
        return np.ones(3)
    matrix = np.asarray(cam_from_xyz, dtype=np.float64)
    return (matrix @ xy_to_xyz(cct_to_xy(illuminant))) / (matrix @ xy_to_xyz(D65_XY))


def bank_sample(
    entry: BankEntry,
    rng: np.random.Generator,
    *,
    patch: int,
    top: int,
    left: int,
    transform: int,
    exposure: float,
    illuminant: float | None,
    olpf_px: float,
    iso: float,
    sensor: str,
    blind: bool,
    demosaic: Demosaic,
    denoise: Denoise | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training example from a bank entry: the sensor side of a capture (module notes).

    Parameters
    ----------
    patch, top, left : int
        The patch's side and its corner in the entry, at least ``entry.margin`` (and
        :data:`SAMPLE_CONTEXT`) from the border.
    transform : int
        :func:`dihedral` index, applied to the patch and its support.
    exposure, illuminant, olpf_px, iso, sensor, blind : the capture (module notes).
    demosaic : callable (mosaic, gains) -> (H, W, 3)
    denoise : callable (mosaic, noise model) -> mosaic, optional
        Run on the noisy mosaic before the demosaic, as the develop pipeline's default
        ``--denoise auto`` does (the noise model is the one the noise was drawn from, as a
        DNG NoiseProfile states it).

    Returns
    -------
    (image, optics, target) as :func:`~nnip.train.lens_task.simulate_lens_pair`: float32,
    (3, patch, patch), (4, patch, patch), (3, patch, patch).
    """
    c = SAMPLE_CONTEXT
    border = max(entry.margin, c)
    last = entry.side - border - patch
    if not (border <= top <= last and border <= left <= last):
        raise ValueError(f"a {patch} px patch at ({top}, {left}) is within {border} px of the "
                         f"border of the {entry.side} px entry")
    size = patch + 2 * c
    region = (slice(top - c, top - c + size), slice(left - c, left - c + size))
    gains = (exposure * relight_gains(entry.cam_from_xyz, illuminant)).astype(np.float32)
    blurred = dihedral(np.asarray(entry.blurred[region], dtype=np.float32), transform) * gains
    sharp = dihedral(np.asarray(entry.sharp[region], dtype=np.float32), transform) * gains

    black, white = default_black_level(_RAW_BITS), 2**_RAW_BITS - 1
    noise = noise_model_for_iso(iso, sensor)
    noisy = add_noise(mosaic_bayer(olpf(blurred, olpf_px), "RGGB"), noise, rng)
    mosaic = normalize_raw(quantize(noisy, _RAW_BITS, black, white), black, white)
    if denoise is not None:
        mosaic = denoise(mosaic, noise)
    wb = illuminant_wb(D65_XY if illuminant is None else illuminant, entry.cam_from_xyz)
    rgb = demosaic(mosaic, wb)

    inner = (slice(c, c + patch), slice(c, c + patch))
    image = encode_transfer(np.moveaxis(rgb[inner], -1, 0), "srgb")
    target = encode_transfer(np.moveaxis(np.clip(sharp[inner], 0.0, 1.0), -1, 0), "srgb")
    cy, cx = dihedral_point(entry.field.cy - region[0].start, entry.field.cx - region[1].start,
                            size, transform)
    lens = entry.lens
    airy = BLIND_AIRY_PX if blind else airy_radius_px(lens.fnumber, lens.pixel_pitch_um)
    optics = optics_planes(patch, patch, airy, cy - c, cx - c, entry.field.r_corner)
    return (np.ascontiguousarray(image, dtype=np.float32), optics,
            np.ascontiguousarray(target, dtype=np.float32))


def usable_illuminant(illuminant: float | None, cam_from_xyz: np.ndarray) -> float | None:
    """``illuminant``, or None (D65) where the entry's camera matrix gives a non-positive
    neutral for it: such a light cannot be white balanced (a training run stopped on one,
    a warm light through a strongly perturbed matrix, 2026-11-27)."""
    if illuminant is None:
        return None
    try:
        camera_neutral(cam_from_xyz, illuminant)
    except ValueError:
        return None
    return illuminant


def random_sample(entry: BankEntry, rng: np.random.Generator, config: Mapping[str, Any],
                  demosaic: Demosaic, denoise: Denoise | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bank_sample` with everything drawn as the per-pair simulation draws it; the
    mosaic is denoised (``denoise``) in a ``denoise_fraction`` of the samples."""
    patch = int(config["patch"])
    border = max(entry.margin, SAMPLE_CONTEXT)
    last = entry.side - border - patch
    return bank_sample(
        entry, rng, patch=patch,
        top=int(rng.integers(border, last + 1)), left=int(rng.integers(border, last + 1)),
        transform=int(rng.integers(8)),
        exposure=random_exposure(rng),
        illuminant=usable_illuminant(random_illuminant(rng), entry.cam_from_xyz),
        olpf_px=0.0 if rng.uniform() < 0.3 else float(rng.uniform(0.3, 1.0)),
        iso=random_iso(rng, config["iso_range"]),
        sensor=random_sensor(rng),
        blind=bool(rng.random() < float(config["blind_fraction"])),
        demosaic=demosaic,
        denoise=denoise if rng.random() < float(config.get("denoise_fraction", 0.0)) else None,
    )


def check_bank_config(config: Mapping[str, Any]) -> None:
    """Raise ValueError when the bank keys cannot work with the patch and context."""
    patch, context = int(config["patch"]), int(config["context"])
    if context < SAMPLE_CONTEXT:
        raise ValueError(f"a bank needs context >= {SAMPLE_CONTEXT} (the demosaic's support), "
                         f"got {context}")
    if int(config["bank_side"]) < patch + 2 * context:
        raise ValueError(f"bank_side must be at least patch + 2 context = {patch + 2 * context}, "
                         f"got {config['bank_side']}")
    if float(config["bank_reuse"]) < 1:
        raise ValueError(f"bank_reuse must be >= 1, got {config['bank_reuse']}")


class BankBatches(torch.utils.data.IterableDataset):
    """Endless ((image, optics), target) batches, NCHW float32, from a bank it fills.

    Parameters
    ----------
    sampler : PatchSampler or None
        Photo crops for new entries; None: synthetic patterns only.
    config : mapping
        The task config (``bank_entries``, ``bank_reuse``, ``bank_side`` and the lens keys).
    seed : int
    directory : Path
        The bank (:func:`bank_directory`).
    """

    def __init__(self, sampler: PatchSampler | None, config: Mapping[str, Any], seed: int,
                 directory: Path) -> None:
        super().__init__()
        check_bank_config(config)
        self.sampler, self.config, self.seed = sampler, dict(config), seed
        self.directory = Path(directory)
        self.batch = int(config["batch"])
        self.target = int(config["bank_entries"])
        self.reuse = float(config["bank_reuse"])

    def fresh_count(self, entries: int, credit: float) -> tuple[int, float]:
        """(entries to build for the next batch, credit carried on): a whole batch when the
        bank is empty, then one per ``bank_reuse`` samples until it holds ``bank_entries``."""
        if entries >= self.target:
            return 0, 0.0
        if entries == 0:
            return min(self.batch, self.target), credit
        credit += self.batch / self.reuse
        count = min(int(credit), self.batch, self.target - entries)
        return count, credit - count

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        bank = LensBank(self.directory)
        # The bank's size is mixed in, so a new run on a partly built bank adds new entries.
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0, len(bank)])
        demosaic = demosaicker(self.config["demosaic"])
        denoise = denoiser() if float(self.config.get("denoise_fraction", 0.0)) > 0 else None
        credit = 0.0
        while True:
            count, credit = self.fresh_count(len(bank), credit)
            fresh = [random_entry(self.sampler, self.config, rng) for _ in range(count)]
            for entry in fresh:
                bank.add(entry)
            if fresh and len(bank) >= self.target:
                bank.flush()  # the last, partial chunk
            # Each fresh entry once, the rest of the batch from the whole bank.
            reused = rng.integers(len(bank), size=self.batch - len(fresh))
            chosen = fresh + [bank.entry(int(i)) for i in reused]
            items = [random_sample(entry, rng, self.config, demosaic, denoise)
                     for entry in chosen]
            image, optics, target = (torch.from_numpy(np.stack(parts)) for parts in zip(*items))
            yield (image, optics), target


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nnip.train.lens_bank``: add entries to the bank a lens run would use."""
    parser = argparse.ArgumentParser(prog="python -m nnip.train.lens_bank",
                                     description="Fill the lens task's bank of blurred crops.")
    parser.add_argument("--config", help="lens variant (fast, quality) or a JSON file")
    parser.add_argument("--entries", type=int, required=True, help="entries to add")
    parser.add_argument("--data", nargs="+", type=Path, help="training image folders "
                        "(default: the task's folders under ../shared/data/train)")
    parser.add_argument("--cache", type=Path,
                        default=Path(__file__).resolve().parents[2] / "runs" / "cache" / "teachers",
                        help="teacher cache (default runs/cache/teachers); the bank goes "
                             "beside it, in lens-bank/")
    parser.add_argument("--seed", type=int, help="default: fresh entropy")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout)
    from nnip.train.tasks import default_data_dirs, get_task, load_config  # noqa: PLC0415

    task = get_task("lens")
    try:
        config = load_config(task, args.config)
        check_bank_config(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_dirs = args.data or default_data_dirs(task)
    missing = [str(d) for d in data_dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: data folder(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    train_paths, _ = training_split(data_dirs, int(config["holdout_every"]))
    sampler = lens_sampler(config, train_paths, TeacherCache(args.cache))
    bank = LensBank(bank_directory(args.cache.parent / "lens-bank", config, train_paths))
    rng = np.random.default_rng(args.seed)
    for done in range(1, args.entries + 1):
        bank.add(random_entry(sampler, config, rng))
        if done % CHUNK_ENTRIES == 0:
            log.info("%d / %d entries built, %d in the bank", done, args.entries, bank.stored)
    bank.flush()
    print(f"{bank.directory}: {bank.stored} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
