"""ICC profiles: Pillow/LittleCMS opens them and converts as our own maths does."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from nnip.develop.colour import COLOUR_SPACES, D50_ICC, colour_space, decode_transfer, encode_transfer
from nnip.develop.icc import icc_profile

CASES = [(name, version) for name in COLOUR_SPACES for version in (2, 4)]


def open_profile(data: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(data))


def tag_table(data: bytes) -> dict[bytes, tuple[int, int]]:
    (count,) = struct.unpack(">I", data[128:132])
    table = {}
    for i in range(count):
        sig, offset, size = struct.unpack(">4sII", data[132 + 12 * i:144 + 12 * i])
        table[sig] = (offset, size)
    return table


@pytest.mark.parametrize("name, version", CASES)
def test_profile_structure(name: str, version: int) -> None:
    data = icc_profile(name, version)
    assert struct.unpack(">I", data[:4])[0] == len(data)
    assert data[12:24] == b"mntrRGB XYZ " and data[36:40] == b"acsp"
    assert data[8] == version
    table = tag_table(data)
    required = {b"desc", b"wtpt", b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC", b"cprt"}
    assert required <= set(table)
    for offset, size in table.values():
        assert offset % 4 == 0 and offset + size <= len(data)
    # Colorants add up to the PCS white exactly (no tint at RGB white).
    colorants = [struct.unpack(">3i", data[table[s][0] + 8:table[s][0] + 20])
                 for s in (b"rXYZ", b"gXYZ", b"bXYZ")]
    assert tuple(np.sum(colorants, axis=0)) == tuple(np.round(D50_ICC * 65536).astype(int))


@pytest.mark.parametrize("name, version", CASES)
def test_pillow_opens_and_names_it(name: str, version: int) -> None:
    profile = open_profile(icc_profile(name, version))
    assert ImageCms.getProfileDescription(profile).strip() == colour_space(name).description
    assert profile.profile.version == pytest.approx({2: 2.4, 4: 4.3}[version])


@pytest.mark.parametrize("name, version", CASES)
def test_littlecms_converts_like_our_maths(name: str, version: int) -> None:
    """Our space -> sRGB through LittleCMS equals our own matrices and curves."""
    space, srgb = colour_space(name), colour_space("srgb")
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    image = Image.fromarray(codes)
    converted = ImageCms.profileToProfile(
        image, open_profile(icc_profile(name, version)), ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    got = np.asarray(converted).astype(np.float64)
    linear = decode_transfer(codes / 255.0, space.transfer).astype(np.float64)
    xyz = linear @ np.linalg.inv(space.rgb_from_xyz_d65()).T
    srgb_linear = xyz @ srgb.rgb_from_xyz_d65().T
    inside = np.all((srgb_linear > 0.002) & (srgb_linear < 0.998), axis=-1)
    expected = encode_transfer(srgb_linear, "srgb") * 255.0
    assert inside.sum() > 100
    assert np.abs(got - expected)[inside].max() <= 1.0


def test_profiles_are_deterministic_and_distinct() -> None:
    assert icc_profile("srgb") == icc_profile("srgb")
    assert len({icc_profile(n) for n in COLOUR_SPACES}) == len(COLOUR_SPACES)


def test_unknown_space_and_version() -> None:
    with pytest.raises(ValueError, match="unknown colour space"):
        icc_profile("rec2020")
    with pytest.raises(ValueError, match="ICC version"):
        icc_profile("srgb", 3)
