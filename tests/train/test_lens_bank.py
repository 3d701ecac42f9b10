"""The lens task's bank of blurred crops: storage, per-sample physics, loader, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from nnip.develop.optics import BLIND_AIRY_PX, airy_radius_px, optics_planes  # noqa: E402
from nnip.simulate.color import D65_XY, camera_matrices, cct_to_xy, xy_to_xyz  # noqa: E402
from nnip.simulate.optics import Field, LensParams  # noqa: E402
from nnip.simulate.patterns import random_pattern  # noqa: E402
from nnip.train.cli import main  # noqa: E402
from nnip.train.data import PatchSampler  # noqa: E402
from nnip.train.lens_bank import (  # noqa: E402
    SAMPLE_CONTEXT,
    BankBatches,
    LensBank,
    bank_sample,
    build_entry,
    dihedral,
    dihedral_point,
    random_entry,
    random_sample,
    relight_gains,
    stored_entries,
)
from nnip.train.lens_task import malvar_demosaic  # noqa: E402
from nnip.train.tasks import get_task, load_config  # noqa: E402

CAMERA = camera_matrices()["Canon EOS 5D Mark III"]


def _entry(seed: int = 0, side: int = 64, lens: LensParams | None = None,
           field: Field = Field(-300.0, -200.0, 1000.0), clean: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    clean = random_pattern("fabric", side, rng) if clean is None else clean
    lens = lens or LensParams(fnumber=8.0, pixel_pitch_um=4.0, aberration_px=1.5, ca_red_px=1.0,
                              ca_blue_px=-0.5)
    return build_entry(clean, rng, lens=lens, field=field, cam_from_xyz=CAMERA, margin=8)


def _sample(entry, seed: int, **overrides):
    args = dict(patch=32, top=12, left=16, transform=0, exposure=1.0, illuminant=None,
                olpf_px=0.5, iso=1600.0, sensor="sony-a7rm2", blind=False,
                demosaic=malvar_demosaic)
    args.update(overrides)
    return bank_sample(entry, np.random.default_rng(seed), **args)


def test_entries_round_trip_through_chunks(tmp_path) -> None:
    bank = LensBank(tmp_path / "bank")
    entries = [_entry(seed) for seed in range(3)] + [_entry(9, side=48)]
    for entry in entries:
        bank.add(entry)
    assert len(bank) == 4 and bank.stored == 0
    bank.flush()
    assert stored_entries(tmp_path / "bank") == 4

    reopened = LensBank(tmp_path / "bank")
    assert len(reopened) == 4
    def order(entry):  # chunks are written per side: compare as sets
        return entry.side, float(entry.blurred[0, 0, 0])

    loaded = sorted((reopened.entry(i) for i in range(4)), key=order)
    originals = sorted(entries, key=order)
    for got, want in zip(loaded, originals):
        assert got.blurred.dtype == np.float16 and got.side == want.side
        np.testing.assert_array_equal(got.blurred, want.blurred)
        np.testing.assert_array_equal(got.sharp, want.sharp)
        assert got.lens == want.lens and got.field == want.field and got.margin == 8
        np.testing.assert_array_equal(got.cam_from_xyz, want.cam_from_xyz)


def test_entry_is_the_lens_blur_of_the_scene() -> None:
    entry = _entry()
    blurred, sharp = entry.blurred.astype(np.float32), entry.sharp.astype(np.float32)
    detail = lambda a: float(np.abs(np.diff(a[8:-8, 8:-8], axis=1)).mean())  # noqa: E731
    assert detail(blurred) < 0.8 * detail(sharp)
    # the D65 scene white is the camera's D65 white: the sharp plane is the scene in camera RGB
    flat = _entry(clean=np.ones((32, 32, 3), np.float32))
    np.testing.assert_allclose(flat.sharp[4, 4], CAMERA @ xy_to_xyz(D65_XY), rtol=2e-3)


def test_dihedral_point_follows_the_pixels() -> None:
    image = np.zeros((9, 9))
    image[1, 6] = 1.0
    for transform in range(8):
        moved = dihedral(image, transform)
        y, x = dihedral_point(1, 6, 9, transform)
        assert np.argwhere(moved == 1.0).tolist() == [[int(y), int(x)]]


def test_optics_map_is_the_map_of_the_patch_position() -> None:
    entry = _entry()
    image, optics, target = _sample(entry, 1, top=12, left=16)
    airy = airy_radius_px(8.0, 4.0)
    np.testing.assert_allclose(
        optics, optics_planes(32, 32, airy, entry.field.cy - 12, entry.field.cx - 16, 1000.0),
        atol=1e-6)
    plain_radius = optics[1]
    for transform in range(8):
        _, moved, _ = _sample(entry, 1, transform=transform, blind=transform == 3)
        # the field radius is a scalar field: it moves with the pixels
        np.testing.assert_allclose(moved[1], dihedral(plain_radius, transform), atol=1e-6)
        assert np.all(moved[0] == (BLIND_AIRY_PX if transform == 3 else np.float32(airy)))


def _centroid(plane: np.ndarray) -> np.ndarray:
    weight = np.clip(plane - np.median(plane), 0.0, None)
    yy, xx = np.mgrid[0 : plane.shape[0], 0 : plane.shape[1]]
    return np.array([(weight * yy).sum(), (weight * xx).sum()]) / weight.sum()


def test_lateral_ca_stays_radial_under_every_transform() -> None:
    """Red is magnified outwards: after any flip or turn it still lies away from the centre
    the optics map points to, so the map and the image describe one lens."""
    yy, xx = np.mgrid[0:64, 0:64]
    spot = np.exp(-((yy - 30.0) ** 2 + (xx - 34.0) ** 2) / (2 * 1.5**2)) * 0.8
    clean = np.repeat(spot[..., None], 3, axis=2).astype(np.float32)
    lens = LensParams(fnumber=1.4, pixel_pitch_um=6.0, ca_red_px=4.0)
    entry = _entry(clean=clean, lens=lens, field=Field(-50.0, 90.0, 100.0))
    for transform in range(8):
        image, optics, _ = _sample(entry, 2, patch=48, top=8, left=8, transform=transform,
                                   iso=100.0, olpf_px=0.0)
        green, red = _centroid(image[1]), _centroid(image[0])
        y, x = np.round(green).astype(int)
        outwards = np.array([optics[3, y, x], optics[2, y, x]])  # (sin, cos): (dy, dx)
        shift = red - green
        assert np.linalg.norm(shift) > 1.5
        assert shift @ outwards > 0.9 * np.linalg.norm(shift), (transform, shift, outwards)


def test_noise_is_fresh_for_each_reuse_and_the_target_is_not() -> None:
    entry = _entry()
    first, optics1, target1 = _sample(entry, 3)
    second, optics2, target2 = _sample(entry, 4)
    assert first.dtype == target1.dtype == optics1.dtype == np.float32
    assert first.shape == target1.shape == (3, 32, 32) and optics1.shape == (4, 32, 32)
    assert np.abs(first - second).mean() > 1e-3
    np.testing.assert_array_equal(target1, target2)
    np.testing.assert_array_equal(optics1, optics2)
    brighter = _sample(entry, 3, exposure=2.0)[2]
    assert brighter.mean() > target1.mean()


def test_a_denoiser_sees_the_noisy_mosaic_and_its_noise_model() -> None:
    entry = _entry()
    seen = []

    def flatten(mosaic: np.ndarray, noise) -> np.ndarray:
        seen.append((mosaic.shape, noise.a, noise.b))
        return np.full_like(mosaic, 0.25)

    image, _, target = _sample(entry, 3, denoise=flatten)
    plain = _sample(entry, 3)[0]
    (shape, a, b), = seen
    assert shape == (48, 48) and a > 0 and b > 0  # patch 32 + 2 x 8 of demosaic support
    assert np.ptp(image) < 1e-5 and np.ptp(plain) > 0.1  # what the denoiser gave was used
    np.testing.assert_array_equal(target, _sample(entry, 3)[2])


def test_relighting_moves_white_where_the_light_puts_it() -> None:
    np.testing.assert_array_equal(relight_gains(CAMERA, None), np.ones(3))
    gains = relight_gains(CAMERA, 3000.0)
    np.testing.assert_allclose(gains * (CAMERA @ xy_to_xyz(D65_XY)),
                               CAMERA @ xy_to_xyz(cct_to_xy(3000.0)))
    # a grey scene relit by 3000 K: much redder and less blue in camera RGB than under D65
    grey = _entry(clean=np.full((48, 48, 3), 0.5, np.float32))
    daylight = _sample(grey, 5, patch=16, top=16, left=16)[2]
    warm = _sample(grey, 5, patch=16, top=16, left=16, illuminant=3000.0)[2]
    assert warm[0].mean() / warm[2].mean() > 1.5 * daylight[0].mean() / daylight[2].mean()


def test_patch_must_keep_the_margin() -> None:
    with pytest.raises(ValueError, match="within 8 px"):
        _sample(_entry(), 0, top=4)


def _tiny_config(**overrides) -> dict:
    config = load_config(get_task("lens"), "fast")
    config.update({"patch": 24, "context": 8, "batch": 3, "bank_side": 48, "bank_entries": 5,
                   "bank_reuse": 2})
    config.update(overrides)
    return config


def test_loader_builds_then_reuses(tmp_path) -> None:
    data = BankBatches(None, _tiny_config(), seed=0, directory=tmp_path / "bank")
    assert data.fresh_count(0, 0.0) == (3, 0.0)  # an empty bank: a whole fresh batch
    assert data.fresh_count(3, 0.0) == (1, 0.5)  # then one entry per 2 samples
    assert data.fresh_count(4, 0.5) == (1, 1.0)  # capped at bank_entries
    assert data.fresh_count(5, 0.7) == (0, 0.0)
    stream = iter(data)
    for _ in range(4):
        (image, optics), target = next(stream)
        assert image.shape == target.shape == (3, 3, 24, 24) and optics.shape == (3, 4, 24, 24)
        assert image.dtype == optics.dtype == target.dtype == torch.float32
        assert torch.isfinite(image).all() and 0 <= float(target.min()) <= float(target.max()) <= 1
    assert stored_entries(tmp_path / "bank") == 5  # full: written, partial chunk included


def test_small_teachers_give_entries_of_their_own_size() -> None:
    """A teacher under bank_side (CBSD432 at patch 128) still makes entries, as it makes
    per-pair crops: of its shorter side, with room for one patch and its context."""
    rng = np.random.default_rng(6)
    teachers = [(rng.random((44, 60, 3)) * 255).astype(np.uint8)]
    sampler = PatchSampler(teachers, flat_threshold=0.0, flat_keep=1.0)
    config = _tiny_config(pattern_fraction=0.0)
    entry = random_entry(sampler, config, rng)
    assert entry.side == 44 and entry.margin == 8
    image, optics, target = random_sample(entry, rng, config, malvar_demosaic)
    assert image.shape == target.shape == (3, 24, 24) and optics.shape == (4, 24, 24)


def test_bank_config_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="bank_side"):
        BankBatches(None, _tiny_config(bank_side=30), seed=0, directory=tmp_path)
    with pytest.raises(ValueError, match="context"):
        BankBatches(None, _tiny_config(context=SAMPLE_CONTEXT - 2), seed=0, directory=tmp_path)


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(4):
        tiles = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
        Image.fromarray(np.kron(tiles, np.ones((14, 14, 1), np.uint8))).save(folder / f"{index}.png")
    return folder


def test_training_runs_from_an_empty_bank_and_resumes_on_it(tmp_path, images) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "base": "fast", "widths": [8, 8], "blocks": [1, 1], "patch": 24, "context": 8,
        "batch": 2, "val_crop": 32, "holdout_every": 2, "warmup_steps": 1,
        "checkpoint_minutes": 100, "loss_border": 2,
        "bank_side": 56, "bank_entries": 4, "bank_reuse": 2,
    }))
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["lens", "--config", str(config), "--data", str(images), "--out", str(out),
              "--cache", str(cache), "--threads", "1", "--minutes", "2"]
    assert main(common + ["--max-steps", "3"]) == 0
    (bank,) = (tmp_path / "lens-bank").iterdir()
    assert json.loads((bank / "bank.json").read_text())["config"]["bank_side"] == 56
    assert stored_entries(bank) == 4

    assert main(common + ["--max-steps", "5", "--resume"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 5 and np.isfinite(records[-1]["val_psnr_db"])
    assert stored_entries(bank) == 4  # full: the resumed run only reused it


def test_builder_fills_the_bank_a_run_would_use(tmp_path, images, capsys) -> None:
    from nnip.train.lens_bank import main as build  # noqa: PLC0415

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"patch": 24, "context": 8, "bank_side": 56,
                                  "holdout_every": 2}))
    cache = tmp_path / "cache"
    common = ["--config", str(config), "--data", str(images), "--cache", str(cache)]
    assert build(common + ["--entries", "3", "--seed", "1"]) == 0
    (bank,) = (tmp_path / "lens-bank").iterdir()
    assert stored_entries(bank) == 3 and f"{bank}: 3 entries" in capsys.readouterr().out
    config.write_text(json.dumps({"patch": 24, "context": 8, "bank_side": 30}))
    assert build(common + ["--entries", "1"]) == 2
    assert "bank_side must be at least" in capsys.readouterr().err


def test_a_light_the_camera_matrix_cannot_white_balance_falls_back_to_d65() -> None:
    import numpy as np

    from nnip.simulate.color import camera_neutral
    from nnip.train.lens_bank import usable_illuminant

    # Red row (-1, 0, 1): positive for D65's white (more Z than X), negative at 2800 K.
    matrix = np.array([[-1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert camera_neutral(matrix)[0] > 0
    assert usable_illuminant(2800.0, matrix) is None
    assert usable_illuminant(6000.0, matrix) == 6000.0
    assert usable_illuminant(None, matrix) is None
    assert usable_illuminant(2800.0, np.eye(3)) == 2800.0
