"""The optics map from EXIF: pixel pitch sources, diffraction radius, blind mode, planes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dev_scenes import needs_shared
from nnip.develop.optics import (
    BLIND_AIRY_PX,
    OpticsMap,
    airy_radius_px,
    camera_key,
    optics_for_frame,
    optics_from_exif,
    optics_planes,
    pixel_pitch_um,
)

# Canon EOS 5D Mark III: 36.0 mm wide, 5760 x 3840 pixels -> 6.25 um.
FIVE_D3 = dict(height=3840, width=5760)


def formula_px(fnumber: float, pitch_um: float) -> float:
    return 1.22 * 0.550 * fnumber / pitch_um


def test_airy_radius_is_the_first_zero_formula() -> None:
    assert airy_radius_px(8.0, 4.0) == pytest.approx(1.22 * 0.55 * 8 / 4, rel=1e-12)
    assert airy_radius_px(16.0, 4.0, wavelength_nm=450.0) == pytest.approx(1.22 * 0.45 * 4)
    with pytest.raises(ValueError):
        airy_radius_px(0.0, 4.0)


@pytest.mark.parametrize("make, model", [("Canon", "EOS 5D Mark III"),  # LibRaw's spelling
                                         ("Canon", "Canon EOS 5D Mark III")])  # EXIF's
def test_known_camera_gives_the_diffraction_radius(make: str, model: str) -> None:
    optics = optics_from_exif(make=make, model=model, fnumber=8.0, focal_length_mm=50.0,
                              use_lensfun=False, **FIVE_D3)
    assert not optics.blind and optics.notice is None
    assert optics.pitch_source == "camera table"
    assert optics.pixel_pitch_um == pytest.approx(6.25, rel=1e-6)
    assert optics.airy_radius_px == pytest.approx(formula_px(8.0, 6.25), rel=0.05)
    planes = optics.planes()
    assert planes.shape == (4, 3840, 5760) and planes.dtype == np.float32
    assert np.all(planes[0] == np.float32(optics.airy_radius_px))


def test_focal_plane_resolution_comes_first() -> None:
    # 2032 px per inch = 12.5 um, although the table says 6.25 um for this body.
    pitch, source = pixel_pitch_um(5760, 3840, make="Canon", model="EOS 5D Mark III",
                                   focal_plane_x_resolution=2032.0,
                                   focal_plane_resolution_unit=2)
    assert source == "focal-plane resolution" and pitch == pytest.approx(12.5)
    # centimetres, and an unusable unit falls back to the table
    assert pixel_pitch_um(100, 100, focal_plane_x_resolution=2500.0,
                          focal_plane_resolution_unit=3)[0] == pytest.approx(4.0)
    assert pixel_pitch_um(5760, 3840, make="Canon", model="EOS 5D Mark III",
                          focal_plane_x_resolution=2032.0, focal_plane_resolution_unit=1,
                          use_lensfun=False) == (pytest.approx(6.25), "camera table")


def test_lensfun_crop_factor_covers_bodies_missing_from_the_table() -> None:
    pytest.importorskip("lensfunpy")
    # EOS 100D: crop 1.613 in lensfun, 22.3 x 14.9 mm, 5184 x 3456 px -> ~4.3 um
    pitch, source = pixel_pitch_um(5184, 3456, make="Canon", model="Canon EOS 100D")
    assert source == "lensfun crop factor"
    assert pitch == pytest.approx(22.3 / 5184 * 1000, rel=0.02)


def test_missing_exif_is_blind_with_a_notice() -> None:
    no_fnumber = optics_from_exif(make="Canon", model="EOS 5D Mark III", fnumber=None,
                                  use_lensfun=False, **FIVE_D3)
    assert no_fnumber.blind and no_fnumber.airy_radius_px is None
    assert no_fnumber.notice is not None and "no f-number" in no_fnumber.notice
    assert "\n" not in no_fnumber.notice and "blind" in no_fnumber.notice
    assert np.all(no_fnumber.planes()[0] == BLIND_AIRY_PX)

    unknown = optics_from_exif(make="Acme", model="Imaginary 1", fnumber=4.0,
                               use_lensfun=False, height=100, width=150)
    assert unknown.blind and "pixel pitch unknown" in unknown.notice
    nothing = optics_from_exif(height=10, width=10)
    assert nothing.blind and "no f-number" in nothing.notice and "pitch" in nothing.notice


def test_implausible_pitch_is_not_believed() -> None:
    # A 768 px wide simulated DNG named after a full-frame body would mean 47 um pixels.
    optics = optics_from_exif(make="Canon", model="EOS 5D Mark III", fnumber=8.0,
                              height=512, width=768, use_lensfun=False)
    assert optics.blind and "implausible" in optics.notice


def test_camera_key_normalises_both_spellings() -> None:
    assert camera_key("NIKON CORPORATION", "NIKON D850") == "nikon d850"
    assert camera_key("SONY", "ILCE-7RM3") == camera_key("Sony", "ILCE-7RM3") == "sony ilce7rm3"
    assert camera_key("Canon", "Canon EOS R5") == camera_key("Canon", "EOS R5")


def test_planes_geometry() -> None:
    planes = optics_planes(5, 7, 1.5, cy=2.0, cx=3.0, r_corner=math.hypot(2.5, 3.5))
    airy, rho, cos, sin = planes
    assert np.all(airy == 1.5)
    assert rho[2, 3] == 0 and (cos[2, 3], sin[2, 3]) == (1.0, 0.0)
    assert rho[0, 0] == pytest.approx(math.hypot(2, 3) / math.hypot(2.5, 3.5))
    assert (cos[2, 6], sin[2, 6]) == (1.0, 0.0)      # right of the centre
    assert (cos[0, 3], sin[0, 3]) == (0.0, -1.0)     # above (rows grow downwards)
    np.testing.assert_allclose(cos**2 + sin**2, 1.0, atol=1e-6)
    # A region of the frame is the same slice of the whole frame's planes.
    optics = OpticsMap(height=40, width=60, fnumber=4.0, pixel_pitch_um=4.0)
    np.testing.assert_array_equal(optics.planes(10, 20, 8, 16), optics.planes()[:, 10:18, 20:36])
    assert optics.planes()[1].max() == pytest.approx(math.hypot(19.5, 29.5) / math.hypot(20, 30))


def test_real_canon_file_gets_its_pitch() -> None:
    from nnip.raw.frame import read_raw

    frame = read_raw(needs_shared("real", "Canon_EOS_D30.CRW"))
    optics = optics_for_frame(frame, use_lensfun=False)
    # EOS D30: 22.7 mm over 2176 px = 10.4 um; EXIF f/5.6
    assert optics.pixel_pitch_um == pytest.approx(22.7 / 2176 * 1000, rel=1e-6)
    assert optics.airy_radius_px == pytest.approx(formula_px(frame.fnumber, 10.43), rel=0.05)
    assert "f/5.6" in optics.describe()


def test_an_optics_map_is_a_tile_source_equal_to_its_planes() -> None:
    # The lens stage hands the map to the engine as a TileSource (never 4 x H x W at once).
    from nnip.core.tiling import Region, TileSource, gather

    optics = OpticsMap(height=40, width=60, fnumber=8.0, pixel_pitch_um=4.0)
    whole = optics.planes()
    assert isinstance(optics, TileSource) and optics.shape == whole.shape
    np.testing.assert_allclose(optics.region(7, 11, 20, 30), whole[:, 7:27, 11:41], atol=1e-6)
    for region in (Region(-6, -6, 10, 20), Region(30, 50, 48, 70)):
        np.testing.assert_allclose(gather(optics, region), gather(whole, region), atol=1e-6)
