"""read_raw: pattern at the visible origin, levels, metadata, NoiseProfile, bad files.

Synthetic DNGs come from nnip.raw.dng.write_dng (the project's writer); one test writes its
own minimal DNG with an ActiveArea, which write_dng does not offer, to cover odd crops. The
real and broken camera files of ../shared are used when present and skipped otherwise.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import tifffile

from nnip.core.errors import InputError, NnipError, RawDecodeError
from nnip.raw.dng import write_dng
from nnip.raw.frame import BAYER_PATTERNS, bayer_letters, orientation_from_flip, read_raw

SHARED_RAW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "raw"
VALUE_OF = {"R": 1000, "G": 2000, "B": 3000}
SRGB_FROM_XYZ_ROWS = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415],
                               [0.0557, -0.2040, 1.0570]])


def needs_shared(*parts: str) -> Path:
    path = SHARED_RAW.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared RAW data not present ({path})")
    return path


def coded_mosaic(pattern: str, height: int = 32, width: int = 40, origin=(0, 0)) -> np.ndarray:
    """uint16 mosaic whose value tells the colour: R 1000, G 2000, B 3000.

    ``origin`` is where the ``pattern`` cell starts (the phase of the whole array follows).
    """
    mosaic = np.empty((height, width), dtype=np.uint16)
    for index, letter in enumerate(pattern):
        dy, dx = divmod(index, 2)
        mosaic[(origin[0] + dy) % 2::2, (origin[1] + dx) % 2::2] = VALUE_OF[letter]
    return mosaic


def write_test_dng(path: Path, mosaic: np.ndarray, pattern: str, **kwargs) -> Path:
    options = dict(black_level=0, white_level=4095, color_matrix1=SRGB_FROM_XYZ_ROWS,
                   as_shot_neutral=(0.5, 1.0, 0.8), make="Testmake", model="T1")
    options.update(kwargs)
    write_dng(path, mosaic, pattern=pattern, **options)
    return path


def assert_pattern_matches_values(frame) -> None:
    """The pattern's letters agree with the coded values at the visible (0, 0) cell."""
    for index, letter in enumerate(frame.pattern):
        dy, dx = divmod(index, 2)
        assert frame.mosaic[dy, dx] == VALUE_OF[letter], (frame.pattern, index)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_all_four_phases_from_write_dng(tmp_path: Path, pattern: str) -> None:
    path = write_test_dng(tmp_path / "p.dng", coded_mosaic(pattern), pattern)
    frame = read_raw(path)
    assert frame.pattern == pattern
    assert frame.is_bayer
    assert frame.mosaic.shape == (32, 40) and frame.mosaic.dtype == np.uint16
    assert_pattern_matches_values(frame)


def write_active_area_dng(path: Path, mosaic: np.ndarray, pattern: str, area) -> Path:
    """Minimal DNG with an ActiveArea (top, left, bottom, right); CFAPattern is relative to
    the active area's origin, as the DNG specification says."""
    cfa = bytes({"R": 0, "G": 1, "B": 2}[c] for c in pattern)
    matrix = [v for x in SRGB_FROM_XYZ_ROWS.ravel() for v in (int(round(x * 10000)), 10000)]
    tags = [
        (271, "s", 0, "Testmake", True), (272, "s", 0, "Crop", True),
        (33421, "H", 2, (2, 2), True), (33422, "B", 4, cfa, True),
        (50706, "B", 4, bytes((1, 4, 0, 0)), True), (50708, "s", 0, "Testmake Crop", True),
        (50714, "I", 1, 0, True), (50717, "I", 1, 4095, True),
        (50721, "2i", 9, matrix, True), (50728, "2I", 3, (1, 2, 1, 1, 4, 5), True),
        (50778, "H", 1, 21, True), (50829, "I", 4, tuple(area), True),
    ]
    tifffile.imwrite(path, mosaic, photometric=32803, extratags=tags)
    return path


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
@pytest.mark.parametrize("area", [(1, 0, 32, 40), (0, 1, 32, 40), (1, 1, 31, 39), (3, 5, 32, 39)])
def test_odd_active_area_offsets(tmp_path: Path, pattern: str, area) -> None:
    top, left, bottom, right = area
    mosaic = coded_mosaic(pattern, 32, 40, origin=(top, left))
    frame = read_raw(write_active_area_dng(tmp_path / "crop.dng", mosaic, pattern, area))
    # LibRaw may trim the area to even offsets; whatever it keeps, the pattern names the
    # colour really lying at the visible (0, 0).
    assert frame.pattern in BAYER_PATTERNS
    assert_pattern_matches_values(frame)
    assert frame.mosaic.shape[0] <= bottom - top and frame.mosaic.shape[1] <= right - left
    assert frame.mosaic.shape[0] >= bottom - top - 1 and frame.mosaic.shape[1] >= right - left - 1


def test_levels_white_balance_matrix_and_exif(tmp_path: Path) -> None:
    when = dt.datetime(2023, 5, 17, 10, 11, 12)
    path = write_test_dng(
        tmp_path / "meta.dng", coded_mosaic("RGGB") + 100, "RGGB",
        black_level=(100, 101, 102, 103), white_level=4000, as_shot_neutral=(0.5, 1.0, 0.8),
        iso=800, fnumber=2.8, focal_length=35.0, exposure_time=1 / 250, lens_model="Lens 35",
        orientation=6, datetime=when, noise_profile=(2e-4, 3e-6))
    frame = read_raw(path)
    assert frame.black_level_per_channel == (100.0, 101.0, 103.0, 102.0)  # by colour R, G, B, G2
    assert frame.white_level == 4000.0
    assert frame.camera_whitebalance == pytest.approx((2.0, 1.0, 1.25), rel=1e-4)
    np.testing.assert_allclose(frame.cam_from_xyz, SRGB_FROM_XYZ_ROWS, atol=1e-6)
    assert (frame.make, frame.model, frame.lens) == ("Testmake", "T1", "Lens 35")
    assert frame.iso == 800 and frame.fnumber == pytest.approx(2.8)
    assert frame.focal_length == pytest.approx(35.0)
    assert frame.exposure_time == pytest.approx(1 / 250)
    assert frame.orientation == 6
    assert frame.capture_time == when
    assert frame.noise_profile == pytest.approx((2e-4, 3e-6))
    assert frame.path == path


def test_no_noise_profile_is_none(tmp_path: Path) -> None:
    frame = read_raw(write_test_dng(tmp_path / "n.dng", coded_mosaic("GBRG"), "GBRG"))
    assert frame.noise_profile is None


def test_per_plane_noise_profile_gives_first_pair(tmp_path: Path) -> None:
    path = write_test_dng(tmp_path / "n3.dng", coded_mosaic("RGGB"), "RGGB",
                          noise_profile=((1e-4, 2e-6), (3e-4, 4e-6), (5e-4, 6e-6)))
    assert read_raw(path).noise_profile == pytest.approx((1e-4, 2e-6))


def test_mosaic_is_a_read_only_copy(tmp_path: Path) -> None:
    frame = read_raw(write_test_dng(tmp_path / "c.dng", coded_mosaic("RGGB"), "RGGB"))
    with pytest.raises(ValueError):
        frame.mosaic[0, 0] = 1
    assert int(frame.mosaic.sum()) == int(coded_mosaic("RGGB").sum())  # file closed, data kept


def test_bayer_letters() -> None:
    desc = "RGBG"
    assert bayer_letters(np.array([[0, 1], [3, 2]]), desc) == "RGGB"
    assert bayer_letters(np.array([[1, 0], [2, 3]]), desc) == "GRBG"
    assert bayer_letters(np.array([[3, 2], [0, 1]]), desc) == "GBRG"
    assert bayer_letters(np.array([[2, 1], [1, 0]]), desc) == "BGGR"
    assert bayer_letters(np.array([[0, 0], [0, 0]]), desc) == ""
    assert bayer_letters(np.zeros((6, 6), dtype=int), desc) == ""


@pytest.mark.parametrize("flip, orientation", [(0, 1), (3, 3), (5, 8), (6, 6), (1, 2), (2, 4)])
def test_orientation_from_flip(flip: int, orientation: int) -> None:
    assert orientation_from_flip(flip) == orientation


# --------------------------------------------------------------------------- real files


def test_real_canon_d30() -> None:
    frame = read_raw(needs_shared("real", "Canon_EOS_D30.CRW"))
    assert frame.pattern == "RGGB" and frame.is_bayer
    assert frame.mosaic.shape == (1448, 2176)
    assert frame.white_level == 4095
    assert frame.black_level_per_channel == (127, 128, 128, 128)
    assert (frame.make, frame.model) == ("Canon", "EOS D30")
    assert frame.camera_whitebalance is None  # the D30 records none: develop falls back
    assert frame.cam_from_xyz is not None
    # Red sites of a warm indoor scene are brighter than blue ones on average.
    red, blue = frame.mosaic[0::2, 0::2].mean(), frame.mosaic[1::2, 1::2].mean()
    assert red > blue


def test_real_kodak_dc50() -> None:
    frame = read_raw(needs_shared("real", "RAW_KODAK_DC50.KDC"))
    assert frame.pattern == "GRBG"
    assert frame.mosaic.shape == (512, 768)
    assert frame.white_level == 16383
    assert (frame.make, frame.model) == ("Kodak", "DC50")
    assert frame.cam_from_xyz is None  # LibRaw has no matrix for this camera


# --------------------------------------------------------------------------- bad files


def shared_bad_files() -> list[Path]:
    files = []
    for folder in ("truncated", "unsupported"):
        directory = SHARED_RAW / folder
        if directory.is_dir():
            files += sorted(directory.iterdir())
    return files


@pytest.mark.parametrize("path", shared_bad_files() or [None], ids=lambda p: p.name if p else "absent")
def test_shared_bad_files_raise_one_clean_line(path: Path | None, capfd) -> None:
    if path is None:
        pytest.skip(f"shared RAW data not present ({SHARED_RAW})")
    with pytest.raises(RawDecodeError) as caught:
        read_raw(path)
    message = str(caught.value)
    assert message and "\n" not in message
    assert path.name not in message and str(path) not in message
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # LibRaw's own stderr chatter never reaches the user


def test_unsupported_gpr_says_unsupported() -> None:
    path = needs_shared("unsupported", "Hero8.GPR")
    with pytest.raises(RawDecodeError, match="unsupported RAW format or codec"):
        read_raw(path)


def test_truncated_crw_says_truncated() -> None:
    path = needs_shared("truncated", "exiftool__CanonRaw.crw")
    with pytest.raises(RawDecodeError, match="truncated or corrupt RAW data"):
        read_raw(path)


def test_stripped_dng_is_refused_every_time() -> None:
    # LibRaw "decodes" this stub into uninitialised memory (different on every read); the
    # DNG's own strip/tile table shows the data is missing.
    path = needs_shared("truncated", "exiftool__DNG.dng")
    for _ in range(3):
        with pytest.raises(RawDecodeError, match="truncated or stripped RAW file"):
            read_raw(path)


def test_dng_with_short_strips_is_refused(tmp_path: Path) -> None:
    whole = write_test_dng(tmp_path / "whole.dng", coded_mosaic("RGGB", 64, 64), "RGGB")
    data = bytearray(whole.read_bytes())
    # Point the strip past the end of the file, as a cut-off download would leave it.
    with tifffile.TiffFile(whole) as tif:
        tag = tif.pages[0].tags[279]  # StripByteCounts
        offset = tag.valueoffset
    data[offset:offset + 4] = (10**6).to_bytes(4, "little")
    broken = tmp_path / "broken.dng"
    broken.write_bytes(bytes(data))
    with pytest.raises(RawDecodeError, match="truncated"):
        read_raw(broken)


def test_zero_byte_cr3(tmp_path: Path) -> None:
    path = tmp_path / "empty.CR3"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_raw(path)


def test_text_file_named_nef(tmp_path: Path, capfd) -> None:
    path = tmp_path / "notes.NEF"
    path.write_text("this is not a raw file\n" * 20)
    with pytest.raises(RawDecodeError, match=r"not a RAW file \(looks like text\)"):
        read_raw(path)
    assert capfd.readouterr().err == ""


def test_jpeg_named_cr2(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.CR2"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(path, "JPEG")
    with pytest.raises(RawDecodeError, match="looks like a JPEG image"):
        read_raw(path)


def test_truncated_synthetic_dng(tmp_path: Path) -> None:
    whole = write_test_dng(tmp_path / "whole.dng", coded_mosaic("RGGB", 64, 64), "RGGB")
    cut = tmp_path / "cut.dng"
    cut.write_bytes(whole.read_bytes()[:3000])
    with pytest.raises(NnipError):
        read_raw(cut)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_raw(tmp_path / "nope.CR3")
    with pytest.raises(InputError, match="directory"):
        read_raw(tmp_path)
