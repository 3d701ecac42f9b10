"""`python -m nnip.simulate.make_dng` and simulate_dng: a clean image becomes a DNG + truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
from PIL import Image

from nnip.simulate.make_dng import main
from nnip.simulate.pairs import simulate_dng


@pytest.fixture()
def clean_png(tmp_path: Path) -> Path:
    yy, xx = np.mgrid[0:64, 0:96]
    img = np.stack([xx * 2.5, yy * 3.5, 255 - xx * 2.0], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path / "clean.png"
    Image.fromarray(img).save(path)
    return path


def test_cli_writes_dng_and_truth(tmp_path, clean_png):
    out, truth = tmp_path / "sim.dng", tmp_path / "truth.tiff"
    rc = main([str(clean_png), str(out), "--iso", "3200", "--fnumber", "8", "--lens-blur", "1.5",
               "--pattern", "gbrg", "--seed", "4", "--truth", str(truth)])
    assert rc == 0
    with rawpy.imread(str(out)) as raw:
        desc = raw.color_desc.decode()
        assert "".join(desc[i] for i in raw.raw_pattern.ravel()) == "GBRG"
        assert raw.other.iso_speed == 3200
        assert raw.other.aperture == pytest.approx(8.0)
        assert raw.raw_image_visible.shape == (64, 96)
    t = tifffile.imread(truth)
    assert t.shape == (64, 96, 3) and t.dtype == np.float32
    clean = np.asarray(Image.open(clean_png), dtype=np.float32) / 255
    np.testing.assert_allclose(t, clean, atol=1e-5)  # 0 EV, sRGB: the clean image itself


def test_same_seed_same_file_content(tmp_path):
    clean = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    a = simulate_dng(clean, tmp_path / "a.dng", iso=800, seed=3)
    b = simulate_dng(clean, tmp_path / "b.dng", iso=800, seed=3)
    c = simulate_dng(clean, tmp_path / "c.dng", iso=800, seed=4)
    np.testing.assert_array_equal(a["raw"], b["raw"])
    assert not np.array_equal(a["raw"], c["raw"])
    with tifffile.TiffFile(tmp_path / "a.dng") as tif:
        profile = tif.pages[0].tags[51041].value
    np.testing.assert_allclose(profile, (a["noise_a"], a["noise_b"]))


def test_cli_errors_are_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    command = [sys.executable, "-m", "nnip.simulate.make_dng", str(text), str(tmp_path / "o.dng")]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"{text}: ") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.dng").exists()
    with pytest.raises(SystemExit) as exc:
        main([str(text), str(tmp_path / "o.dng"), "--pattern", "RGBG"])
    assert exc.value.code == 2
