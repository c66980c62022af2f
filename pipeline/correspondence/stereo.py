"""The scikit-image ``stereo_motorcycle`` pair (Middlebury 2014, 4× down-sampled) as a labelled real pair.

Rectified stereo: ``R = I``, ``t̂ = (−1, 0, 0)``. The disparity map is indexed by the left pixel and
``x_right = x_left − d``; invalid disparities are ``+inf``. A match is an inlier when the disparity at its
rounded left keypoint is finite and the right keypoint lies within ``tolerance_px`` of ``(x_l − d, y_l)``
in both axes; without a finite disparity its label is unknown (−1). One pair with pure sideways motion: a
smoke test of the SIFT → labels → pose chain, not a training or mAP set.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from pipeline.correspondence.features import OPENCV_VERSION, sift_matches
from pipeline.correspondence.geometry import normalise_pixels
from pipeline.correspondence.tables import INLIER, OUTLIER, UNKNOWN, Pair

FOCAL_PX = 994.978
LEFT_CX, CY, DOFFS = 311.193, 254.877, 31.086


def intrinsics(cx: float) -> np.ndarray:
    return np.array([[FOCAL_PX, 0.0, cx], [0.0, FOCAL_PX, CY], [0.0, 0.0, 1.0]])


def disparity_labels(
    uv1: np.ndarray, uv2: np.ndarray, disparity: np.ndarray, tolerance_px: float = 2.0
) -> np.ndarray:
    """Per-match label from the left-indexed disparity map (``UNKNOWN`` where it is not finite)."""
    height, width = disparity.shape
    cols = np.clip(np.rint(uv1[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.rint(uv1[:, 1]).astype(int), 0, height - 1)
    d = disparity[rows, cols].astype(np.float64)
    finite = np.isfinite(d)
    with np.errstate(invalid="ignore"):
        close = (np.abs(uv2[:, 0] - (uv1[:, 0] - d)) <= tolerance_px) & (np.abs(uv2[:, 1] - uv1[:, 1]) <= tolerance_px)
    return np.where(finite, np.where(close, INLIER, OUTLIER), UNKNOWN).astype(np.int8)


def motorcycle_pair(
    n_features: int = 2000,
    contrast_threshold: float = 1e-5,
    max_ratio: float | None = None,
    tolerance_px: float = 2.0,
) -> Pair:
    """SIFT matches between the left and right image, labelled from the ground-truth disparity."""
    left, right, disparity = data.stereo_motorcycle()
    bgr = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in (left, right)]
    matches = sift_matches(*bgr, n_features=n_features, contrast_threshold=contrast_threshold, max_ratio=max_ratio)
    K1, K2 = intrinsics(LEFT_CX), intrinsics(LEFT_CX + DOFFS)
    size = (left.shape[1], left.shape[0])
    return Pair(
        pair_id="stereo_motorcycle/test/000000",
        xs=np.column_stack([normalise_pixels(matches.uv1, K1), normalise_pixels(matches.uv2, K2)]),
        label=disparity_labels(matches.uv1, matches.uv2, disparity, tolerance_px),
        ratio=matches.ratio,
        R=np.eye(3),
        t=np.array([-1.0, 0.0, 0.0]),
        K1=K1,
        K2=K2,
        size1=size,
        size2=size,
        dataset="stereo_motorcycle",
        split="test",
        source=f"skimage.data.stereo_motorcycle sift={n_features} max_ratio={max_ratio} opencv={OPENCV_VERSION}",
        images=("left", "right"),
    )
