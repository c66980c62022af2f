"""upscale_rgb: luma through the method, chroma by bicubic, tiling that changes nothing for a local network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bicubic import Bicubic
from models.noisy import NoisyInput
from models.vdsr import VDSRMethod
from pipeline.data.images import to_uint8
from pipeline.methods import Method
from pipeline.protocols.color import rgb2ycbcr
from pipeline.protocols.resize import imresize
from pipeline.upscale import MIN_SIDE, upscale_rgb


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _tiny_vdsr(depth: int = 3) -> VDSRMethod:
    torch.manual_seed(0)
    method = VDSRMethod(depth=depth, features=4)
    method.load(method.build_network(2).state_dict(), 2)
    return method


@pytest.mark.parametrize("shape", [(37, 29, 3), (37, 29)])
def test_bicubic_method_gives_plain_bicubic(shape: tuple[int, ...]) -> None:
    image = _image(shape)
    expected = to_uint8(imresize(image / 255.0, 3.0))  # no rounding ties within 7e-4 here
    np.testing.assert_array_equal(upscale_rgb(image, 3, Bicubic()), expected)
    np.testing.assert_array_equal(upscale_rgb(image, 3, Bicubic(), tile=32, margin=4), expected)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_and_dtype(scale: int) -> None:
    out = upscale_rgb(_image((9, 11, 3)), scale, _tiny_vdsr())
    assert out.dtype == np.uint8 and out.shape == (9 * scale, 11 * scale, 3)
    assert upscale_rgb(_image((9, 11)), scale, _tiny_vdsr()).shape == (9 * scale, 11 * scale)


class _BrighterLuma(Method):
    """An SR "method" that adds 8 levels to the luma it is given."""

    name = "brighter"
    tasks = ("sr",)

    def restore(self, image: np.ndarray, setting: int) -> np.ndarray:
        return image + np.float32(8 / 255)


def test_only_the_luma_goes_through_the_method() -> None:
    image = np.random.default_rng(0).integers(64, 192, (16, 12, 3), dtype=np.uint8)  # no clipping in RGB
    plain, brighter = (rgb2ycbcr(upscale_rgb(image, 2, method)) for method in (Bicubic(), _BrighterLuma()))
    np.testing.assert_allclose(brighter[..., 0] - plain[..., 0], 8 / 255, atol=1.5 / 255)  # 8-bit RGB rounding
    np.testing.assert_allclose(brighter[..., 1:], plain[..., 1:], atol=1.5 / 255)


def test_tiling_matches_the_whole_image_for_a_local_network(capsys) -> None:
    method, image = _tiny_vdsr(depth=4), _image((35, 23, 3), seed=1)  # receptive-field radius 4 < margin
    whole = upscale_rgb(image, 2, method)
    assert "tile" not in capsys.readouterr().err
    tiled = upscale_rgb(image, 2, method, tile=16, margin=8)
    assert "tile" in capsys.readouterr().err  # the progress bar
    difference = np.abs(tiled.astype(int) - whole)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # float rounding only


def test_tile_and_margin_are_checked() -> None:
    with pytest.raises(ValueError, match="tile >= 1 and margin >= 0"):
        upscale_rgb(_image((8, 8)), 2, Bicubic(), margin=-1)


def test_unsupported_scale_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"vdsr.*×5.*one of \(2, 3, 4\)"):
        upscale_rgb(_image((8, 8, 3)), 5, _tiny_vdsr())
    with pytest.raises(ValueError, match="integer ≥ 2"):
        upscale_rgb(_image((8, 8, 3)), 1, Bicubic())


def test_method_without_super_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="does not do super-resolution"):
        upscale_rgb(_image((8, 8)), 2, NoisyInput())


def test_too_small_image_is_refused() -> None:
    with pytest.raises(ValueError, match=f"too small.*{MIN_SIDE} px"):
        upscale_rgb(_image((MIN_SIDE - 1, 20, 3)), 2, Bicubic())
    assert upscale_rgb(_image((MIN_SIDE, MIN_SIDE, 3)), 2, Bicubic()).shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((8, 8, 4), np.uint8), ValueError),
        (np.zeros((8, 8, 3, 1), np.uint8), ValueError),
        (np.zeros((8, 8, 3), np.float32), TypeError),
    ],
)
def test_malformed_image_is_refused(image: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error, match="expected"):
        upscale_rgb(image, 2, Bicubic())
