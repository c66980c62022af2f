"""SIFT putative matches as CNet builds them: every image-1 keypoint with its nearest image-2 descriptor.

CNet's protocol: 2000 keypoints, ``contrastThreshold = 1e-5``, single nearest neighbour, no ratio test and
no mutual check. The ratio of the first to the second descriptor distance is kept as side information and
can optionally filter the matches (Lowe's test). SIFT output depends on the OpenCV build; record
:data:`OPENCV_VERSION` with any derived data.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OPENCV_VERSION = cv2.__version__


@dataclass(frozen=True)
class Matches:
    """Pixel coordinates ``uv1``, ``uv2`` (N×2 float64) and the descriptor distance ratio (N, float32)."""

    uv1: np.ndarray
    uv2: np.ndarray
    ratio: np.ndarray


def detect(
    image: np.ndarray, n_features: int = 2000, contrast_threshold: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoint coordinates (K×2) and descriptors (K×128) of a BGR or grey uint8 image."""
    sift = cv2.SIFT_create(nfeatures=n_features, contrastThreshold=contrast_threshold)
    keypoints, descriptors = sift.detectAndCompute(image, None)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2)
    return points, (descriptors if descriptors is not None else np.zeros((0, 128), np.float32))


def nearest_neighbours(
    features1: tuple[np.ndarray, np.ndarray], features2: tuple[np.ndarray, np.ndarray], max_ratio: float | None = None
) -> Matches:
    """1-NN matches (in image-1 keypoint order) from ``detect`` outputs, optionally ratio-tested."""
    (points1, desc1), (points2, desc2) = features1, features2
    if len(desc1) == 0 or len(desc2) == 0:
        empty = np.zeros((0, 2))
        return Matches(empty, empty, np.zeros(0, np.float32))
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc1, desc2, k=min(2, len(desc2)))
    first = np.array([m[0].trainIdx for m in knn])
    ratio = np.array([m[0].distance / m[1].distance if len(m) > 1 and m[1].distance > 0 else np.nan for m in knn])
    keep = np.ones(len(knn), dtype=bool) if max_ratio is None else ratio < max_ratio
    return Matches(points1[keep], points2[first[keep]], ratio[keep].astype(np.float32))


def sift_matches(
    image1: np.ndarray,
    image2: np.ndarray,
    n_features: int = 2000,
    contrast_threshold: float = 1e-5,
    max_ratio: float | None = None,
) -> Matches:
    """Detect in both images and match (CNet's protocol by default)."""
    return nearest_neighbours(
        detect(image1, n_features, contrast_threshold), detect(image2, n_features, contrast_threshold), max_ratio
    )
