"""Training data: clean teacher images, detail-weighted patches, on-the-fly degradation.

Teachers are the training photos area-downscaled by 2 (which averages away most JPEG and
demosaic residue; :func:`scaled_teachers` mixes other factors in), cached once as uint8
``.npy`` files so later runs and the data worker memory-map them instead of decoding JPEGs
again. Patches are drawn with probability
proportional to image area (the 36 high-resolution photos hold most of the detail) and
flat patches are mostly rejected. Degradation happens in the DataLoader worker.

Nothing here is specific to one network; :mod:`nnip.train.tasks` composes it per task.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from nnip.simulate.resize import imresize

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "split_holdout",
    "training_split",
    "area_downscale",
    "read_teacher",
    "TeacherCache",
    "scaled_teachers",
    "detail",
    "PatchSampler",
    "bicubic_pair",
    "augment",
    "PairBatches",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

#: A degradation: (HR patch float32 HxWx3 in [0, 1], rng) -> (LR, HR) float32 arrays.
Degrade = Callable[[np.ndarray, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]


def list_images(dirs: Sequence[Path]) -> list[list[Path]]:
    """Image files of each directory (recursively, sorted), one list per directory."""
    groups = []
    for directory in dirs:
        files = sorted(
            p for p in Path(directory).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        groups.append(files)
    return groups


def training_split(data_dirs: Sequence[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(train, held-out) image paths of ``data_dirs`` (see :func:`split_holdout`).

    Raises
    ------
    ValueError
        No training image at all in ``data_dirs``.
    """
    train, held = split_holdout(list_images(data_dirs), every)
    if not train:
        raise ValueError(f"no training images in {', '.join(map(str, data_dirs))}")
    return train, held


def split_holdout(groups: Sequence[Sequence[Path]], every: int) -> tuple[list[Path], list[Path]]:
    """Hold out every ``every``-th file of each directory (index 0 first) for validation.

    Deterministic, so a resumed run validates on the same images; whole images are held
    out so no validation pixel is ever trained on.
    """
    train, held = [], []
    for files in groups:
        for index, path in enumerate(files):
            (held if every > 0 and index % every == 0 else train).append(path)
    return train, held


def area_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks (box filter), cropping the ragged edge.

    Parameters
    ----------
    img : ndarray, shape (H, W, C), any numeric dtype

    Returns
    -------
    ndarray, float32, shape (H // factor, W // factor, C), same units as the input.
    """
    h, w = img.shape[0] // factor * factor, img.shape[1] // factor * factor
    blocks = img[:h, :w].astype(np.float32).reshape(h // factor, factor, w // factor, factor, -1)
    return blocks.mean(axis=(1, 3))


def read_teacher(path: Path, factor: int = 2) -> np.ndarray:
    """Decode an image file and area-downscale it into a clean teacher.

    Returns
    -------
    ndarray, uint8, shape (H // factor, W // factor, 3), sRGB-encoded (grey is replicated).
    """
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return np.clip(np.round(area_downscale(rgb, factor)), 0, 255).astype(np.uint8)


class TeacherCache:
    """Teachers as uint8 ``.npy`` files under ``root``, memory-mapped when read.

    The cache key is the source path, size and modification time, so a changed photo is
    decoded again. Concurrent writers are safe: files are written to a temporary name and
    renamed.
    """

    def __init__(self, root: Path, factor: int = 2) -> None:
        self.root = Path(root)
        self.factor = factor

    def _key(self, path: Path) -> Path:
        stat = path.stat()
        digest = hashlib.sha1(
            f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.factor}".encode()
        ).hexdigest()[:16]
        return self.root / f"{path.stem}-{digest}.npy"

    def get(self, path: Path) -> np.ndarray:
        """The teacher of ``path``: uint8 (H, W, 3), memory-mapped read-only."""
        target = self._key(path)
        if not target.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            teacher = read_teacher(path, self.factor)
            tmp = target.with_suffix(f".tmp{id(teacher)}.npy")
            np.save(tmp, teacher)
            tmp.replace(target)
        return np.load(target, mmap_mode="r")

    def get_all(self, paths: Sequence[Path], min_size: int = 0) -> list[np.ndarray]:
        """Teachers of ``paths`` whose shorter side is at least ``min_size``."""
        teachers = []
        for index, path in enumerate(paths):
            teacher = self.get(path)
            if min(teacher.shape[:2]) >= min_size:
                teachers.append(teacher)
            if (index + 1) % 50 == 0:
                log.info("teachers ready: %d / %d", index + 1, len(paths))
        return teachers


def scaled_teachers(
    config: Mapping[str, Any], paths: Sequence[Path], cache_dir: Path, min_size: int
) -> tuple[list[int], list[np.ndarray], list[float]]:
    """The factors, the teachers at every one of them, and per-teacher sampling weights.

    ``config["teacher_factors"]`` (default ``[2]``) are area-downscale factors of the files;
    each factor's teachers together get its ``teacher_shares`` share of the crops (within a
    factor, by area; the weights are for :class:`PatchSampler`, which multiplies them by
    each teacher's area). A factor whose teachers are all under ``min_size`` adds none.
    Checkpoints made before these keys train on factor 2 alone.
    """
    factors = [int(f) for f in config.get("teacher_factors", [2])]
    shares = [float(s) for s in config.get("teacher_shares", [1.0] * len(factors))]
    if len(shares) != len(factors):
        raise ValueError(f"teacher_shares {shares} do not match teacher_factors {factors}")
    teachers: list[np.ndarray] = []
    weights: list[float] = []
    for factor, share in zip(factors, shares):
        scale = TeacherCache(cache_dir, factor).get_all(paths, min_size=min_size)
        if not scale:
            continue
        area = sum(t.shape[0] * t.shape[1] for t in scale)
        teachers += scale
        weights += [share / area] * len(scale)
    return factors, teachers, weights


def detail(patch: np.ndarray) -> float:
    """Mean absolute horizontal + vertical difference of the grey patch (uint8 units / 255)."""
    grey = patch.astype(np.float32).mean(axis=2) / 255.0
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


@dataclass
class PatchSampler:
    """Random crops from teachers, weighted by area, mostly rejecting flat crops.

    Parameters
    ----------
    teachers : list of uint8 (H, W, 3) arrays
    flat_threshold : float
        Crops whose :func:`detail` is below this are kept only with ``flat_keep`` probability
        (a few flat crops teach the net not to invent texture).
    tries : int
        Crops drawn before giving up and returning a flat one.
    weights : sequence of float, optional
        A factor per teacher on its area's share (e.g. to give one scale of the teachers a
        set share of the crops); None = 1 each.
    """

    teachers: Sequence[np.ndarray]
    flat_threshold: float = 0.03
    flat_keep: float = 0.1
    tries: int = 8
    weights: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ValueError("no training images large enough for the patch size")
        area = np.array([t.shape[0] * t.shape[1] for t in self.teachers], dtype=np.float64)
        if self.weights is not None:
            area *= np.asarray(self.weights, dtype=np.float64)
        self._weights = area / area.sum()

    def sample(self, rng: np.random.Generator, size: int,
               min_size: int | None = None) -> np.ndarray:
        """One square crop, uint8, copied out of the (memory-mapped) teacher.

        Its side is ``size``; with ``min_size``, a teacher smaller than ``size`` gives a crop
        of its own shorter side instead, if that is at least ``min_size``.
        """
        smallest = size if min_size is None else min_size
        patch = None
        for _ in range(self.tries):
            teacher = self.teachers[rng.choice(len(self.teachers), p=self._weights)]
            h, w = teacher.shape[:2]
            side = min(size, h, w)
            if side < smallest:
                continue
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            patch = np.array(teacher[y : y + side, x : x + side])
            if detail(patch) >= self.flat_threshold or rng.random() < self.flat_keep:
                return patch
        if patch is None:
            raise ValueError(f"no teacher is at least {smallest}x{smallest}")
        return patch


def bicubic_pair(hr: np.ndarray, scale: int = 2, context: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The SR protocol's degradation: MATLAB bicubic downscale, then 8-bit quantisation.

    Parameters
    ----------
    hr : ndarray, float32, (H, W, 3), sRGB in [0, 1]
        H and W are multiples of ``scale`` and larger than ``2 * context * scale``.
    context : int
        LR pixels cut from each border after resizing, so the crop's own border (not the
        photo's) never influences the pair.

    Returns
    -------
    lr : ndarray, float32, (H / scale - 2 context, W / scale - 2 context, 3), multiples of 1/255
    hr : ndarray, float32, the matching HR crop
    """
    lr = imresize(hr.astype(np.float64), 1.0 / scale)
    lr = np.clip(np.round(lr * 255.0), 0, 255) / 255.0
    c, s = context, context * scale
    return lr[c:-c, c:-c].astype(np.float32), hr[s:-s, s:-s].astype(np.float32)


def augment(lr: np.ndarray, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip / 90-degree rotation of both arrays (8 dihedral cases)."""
    k = int(rng.integers(4))
    lr, hr = np.rot90(lr, k), np.rot90(hr, k)
    if rng.random() < 0.5:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    return lr, hr


class PairBatches(torch.utils.data.IterableDataset):
    """Endless batches of (LR, HR) NCHW float32 tensors, built in the worker process.

    Parameters
    ----------
    sampler : PatchSampler
    degrade : callable (HR crop float32 HxWx3, rng) -> (LR, HR)
        Must return arrays whose shapes are ``patch`` and ``patch * scale``.
    batch : int
    patch : int
        LR patch side.
    crop : int
        HR crop side handed to ``degrade`` (patch * scale plus any context it cuts).
    seed : int
        Base seed; each worker and each resume offset mixes in, so streams never repeat.
    """

    def __init__(
        self, sampler: PatchSampler, degrade: Degrade, batch: int, patch: int, crop: int, seed: int
    ) -> None:
        super().__init__()
        self.sampler, self.degrade = sampler, degrade
        self.batch, self.patch, self.crop, self.seed = batch, patch, crop, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        while True:
            lrs, hrs = [], []
            for _ in range(self.batch):
                crop = self.sampler.sample(rng, self.crop).astype(np.float32) / 255.0
                lr, hr = augment(*self.degrade(crop, rng), rng)
                lrs.append(np.ascontiguousarray(lr.transpose(2, 0, 1)))
                hrs.append(np.ascontiguousarray(hr.transpose(2, 0, 1)))
            yield torch.from_numpy(np.stack(lrs)), torch.from_numpy(np.stack(hrs))

