"""Synthetic scenes, cameras and models for the develop tests (DNGs by nnip.raw.dng).

Imported by the test modules as ``dev_scenes`` (a name no other test folder uses, unlike
``conftest``).

A scene is linear sRGB (D65); a camera is an XYZ -> camera matrix. ``camera_mosaic`` turns
the scene into the raw values that camera would record, scaled so that a correct pipeline
gives back exactly the scene's colours (no noise, no optics): the ground truth is known.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nnip.develop import colour
from nnip.raw.dng import write_dng

# tests/ holds the shared ONNX graph helpers (as tests/core/conftest.py does).
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from onnx_builders import OPSET, BuiltNet  # noqa: E402

SHARED_RAW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "raw"

#: Adobe's ColorMatrix2 (D65) of the Canon EOS 5D Mark III: a realistic camera.
CAM_FROM_XYZ = np.array([[6722, -635, -963], [-4287, 12460, 2028], [-908, 2162, 5668]]) / 1e4

#: ColorChecker 24 in 8-bit sRGB (BabelColor averages), row by row.
COLORCHECKER_SRGB8 = np.array([
    (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177),
    (103, 189, 170), (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108),
    (157, 188, 64), (224, 163, 46), (56, 61, 150), (70, 148, 73), (175, 54, 60),
    (231, 199, 31), (187, 86, 149), (8, 133, 161), (243, 243, 242), (200, 200, 200),
    (160, 160, 160), (122, 122, 121), (85, 85, 85), (52, 52, 52),
], dtype=np.float64)

PATCH = 24     # patch edge in pixels
INSET = 5      # pixels left out at each patch edge when measuring
BLACK, WHITE = 512, 16383


def needs_shared(*parts: str) -> Path:
    path = SHARED_RAW.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared RAW data not present ({path})")
    return path


def chart_linear_srgb(patch: int = PATCH) -> np.ndarray:
    """(4 * patch, 6 * patch, 3) float64 linear sRGB ColorChecker, patches row-major."""
    linear = colour.decode_transfer(COLORCHECKER_SRGB8 / 255.0, "srgb").astype(np.float64)
    return np.repeat(np.repeat(linear.reshape(4, 6, 3), patch, axis=0), patch, axis=1)


def patch_means(image: np.ndarray, patch: int = PATCH, inset: int = INSET) -> np.ndarray:
    """(24, 3) mean of each patch's centre."""
    out = []
    for row in range(4):
        for col in range(6):
            y, x = row * patch + inset, col * patch + inset
            out.append(image[y:y + patch - 2 * inset, x:x + patch - 2 * inset].reshape(-1, 3)
                       .mean(axis=0))
    return np.array(out)


def camera_mosaic(
    scene_linear_srgb: np.ndarray,
    pattern: str,
    cam_from_xyz: np.ndarray = CAM_FROM_XYZ,
    illuminant_xy: tuple[float, float] = (0.3127, 0.3290),
    gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint16 mosaic of the scene lit by ``illuminant_xy``, and the as-shot neutral.

    The scene's colours are adapted (Bradford) from D65 to the illuminant, as a chart's
    reflectances would look under it. Scaled so that at ``gain`` 1 a pipeline with the right
    white balance returns the scene's D65 XYZ exactly.
    """
    srgb = colour.colour_space("srgb")
    to_illuminant = colour.bradford(colour.xy_to_xyz((0.3127, 0.3290)),
                                    colour.xy_to_xyz(illuminant_xy))
    camera_from_scene = cam_from_xyz @ to_illuminant @ srgb.xyz_from_rgb
    camera = scene_linear_srgb @ camera_from_scene.T
    neutral = cam_from_xyz @ colour.xy_to_xyz(illuminant_xy)
    normalised = camera / neutral.max() * gain
    masks = {"R": 0, "G": 1, "B": 2}
    mosaic = np.empty(camera.shape[:2])
    for index, letter in enumerate(pattern):
        dy, dx = divmod(index, 2)
        mosaic[dy::2, dx::2] = normalised[dy::2, dx::2, masks[letter]]
    raw = BLACK + np.clip(mosaic, 0.0, 1.0) * (WHITE - BLACK)
    return np.round(raw).astype(np.uint16), neutral / neutral[1]


def write_chart_dng(
    path: Path,
    pattern: str = "RGGB",
    scene: np.ndarray | None = None,
    illuminant_xy: tuple[float, float] = (0.3127, 0.3290),
    gain: float = 1.0,
    **kwargs,
) -> Path:
    """A DNG of ``scene`` (default: the ColorChecker) through :data:`CAM_FROM_XYZ`."""
    scene = chart_linear_srgb() if scene is None else scene
    mosaic, neutral = camera_mosaic(scene, pattern, illuminant_xy=illuminant_xy, gain=gain)
    options = dict(black_level=BLACK, white_level=WHITE, color_matrix1=CAM_FROM_XYZ,
                   as_shot_neutral=neutral, make="Testmake", model="Chart 1", iso=200,
                   fnumber=5.6, exposure_time=1 / 125, focal_length=50.0,
                   lens_model="Test 50mm")
    options.update(kwargs)
    write_dng(path, mosaic, pattern=pattern, **options)
    return path


def lab_of_linear_srgb(linear: np.ndarray) -> np.ndarray:
    xyz = np.asarray(linear, dtype=np.float64) @ colour.colour_space("srgb").xyz_from_rgb.T
    return colour.xyz_to_lab(xyz)


def nearest_demosaic_net() -> BuiltNet:
    """A real ONNX 'demosaic' model: packed R, G1, G2, B -> nearest-neighbour RGB at 2x.

    Exact on flat colours and sensitive to the phase: a mosaic handed over in the wrong
    phase comes out in the wrong colours.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((12, 4, 1, 1), dtype=np.float32)
    for sub in range(4):  # DepthToSpace CRD: channel c * 4 + sub goes to colour c
        weight[0 * 4 + sub, 0] = 1.0
        weight[1 * 4 + sub, 1:3] = 0.5
        weight[2 * 4 + sub, 3] = 1.0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["mosaic", "w"], ["planes"]),
         helper.make_node("DepthToSpace", ["planes"], ["rgb"], blocksize=2, mode="CRD")],
        "nearest_demosaic",
        [helper.make_tensor_value_info("mosaic", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", 3, "H2", "W2"])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return BuiltNet(model=model, margin=0, scale=2, inputs=[("mosaic", 4)],
                    outputs=[("rgb", 3)], params=48)
