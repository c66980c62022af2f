import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from pipeline.tiling import apply_tiled


@pytest.mark.parametrize("shape", [(100, 130), (64, 64), (97, 200, 3)])
def test_tiles_reproduce_the_whole_image_result_away_from_borders(shape):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    whole = uniform_filter(image, size=(5, 5, 1)[: image.ndim], mode="reflect")
    tiled = apply_tiled(lambda x: uniform_filter(x, size=(5, 5, 1)[: x.ndim], mode="reflect"), image, tile=32,
                        margin=8, progress=False)
    assert tiled.shape == image.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_small_images_go_through_in_one_call():
    calls = []
    image = np.zeros((20, 30), np.float32)
    apply_tiled(lambda x: calls.append(x.shape) or x, image, tile=32, progress=False)
    assert calls == [(20, 30)]
