"""Two-view geometry in calibrated coordinates: essential matrices, epipolar distances, pose and its errors.

Convention (CNet's): ``X₂ = R X₁ + t``, ``E = [t]ₓR`` and ``x̂₂ᵀ E x̂₁ = 0`` with ``x̂ = (x, y, 1)``.
A correspondence array ``xs`` is ``N×4``: ``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FAILED_ROTATION_DEG = 180.0
FAILED_TRANSLATION_DEG = 90.0
MIN_POSE_POINTS = 5


def skew(t: np.ndarray) -> np.ndarray:
    """The cross-product matrix ``[t]ₓ``."""
    x, y, z = np.asarray(t, dtype=np.float64)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def essential(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[t]ₓR`` scaled to unit Frobenius norm."""
    E = skew(t) @ np.asarray(R, dtype=np.float64)
    return E / np.linalg.norm(E)


def homogeneous(points: np.ndarray) -> np.ndarray:
    """Append a column of ones."""
    return np.concatenate([points, np.ones((len(points), 1))], axis=1)


def episym(xs: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Symmetric squared epipolar distance of every correspondence (float64; independent of E's scale)."""
    xs = np.asarray(xs, dtype=np.float64)
    p1, p2 = homogeneous(xs[:, :2]), homogeneous(xs[:, 2:])
    line2 = p1 @ E.T  # E x̂1, the epipolar line in image 2
    line1 = p2 @ E  # Eᵀ x̂2, the epipolar line in image 1
    residual = np.sum(p2 * line2, axis=1) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return residual * (1.0 / (line2[:, 0] ** 2 + line2[:, 1] ** 2) + 1.0 / (line1[:, 0] ** 2 + line1[:, 1] ** 2))


def relative_pose(
    R1: np.ndarray, t1: np.ndarray, R2: np.ndarray, t2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pose of camera 2 relative to camera 1 from world→camera extrinsics (translation not normalised)."""
    R = R2 @ R1.T
    return R, t2 - R @ t1


def normalise_pixels(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``N×2`` → calibrated coordinates with intrinsics K (no skew)."""
    return (uv - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]


@dataclass(frozen=True)
class Pose:
    """A recovered relative pose and the correspondences that support it."""

    R: np.ndarray
    t: np.ndarray
    inliers: np.ndarray


def _recover(E: np.ndarray, x1: np.ndarray, x2: np.ndarray, mask: np.ndarray) -> tuple[int, Pose]:
    good, R, t, cheiral = cv2.recoverPose(E, x1, x2, np.eye(3), mask=mask.astype(np.uint8)[:, None].copy())
    return int(good), Pose(R, t.ravel() / max(np.linalg.norm(t), 1e-15), cheiral.ravel() > 0)


def pose_from_essential(E: np.ndarray, xs: np.ndarray, keep: np.ndarray) -> Pose | None:
    """Decompose E with ``recoverPose`` on the kept correspondences (protocol (a)); None if fewer than 5."""
    if keep.sum() < MIN_POSE_POINTS or not np.all(np.isfinite(E)):
        return None
    x1, x2 = _points(xs[keep])
    try:
        return _recover(np.asarray(E, dtype=np.float64), x1, x2, np.ones(len(x1), dtype=bool))[1]
    except cv2.error:
        return None


def pose_ransac(
    xs: np.ndarray, keep: np.ndarray, threshold: float, seed: int = 0, prob: float = 0.999
) -> Pose | None:
    """Five-point RANSAC + ``recoverPose`` on the kept correspondences (protocols (b) and (c)).

    Of OpenCV's stacked E candidates the one with most cheirality inliers wins. ``inliers`` indexes ``xs``.
    """
    if keep.sum() < MIN_POSE_POINTS:
        return None
    x1, x2 = _points(xs[keep])
    cv2.setRNGSeed(seed)
    try:
        E, mask = cv2.findEssentialMat(x1, x2, np.eye(3), method=cv2.RANSAC, prob=prob, threshold=threshold)
        if E is None or mask is None:
            return None
        mask = mask.ravel() > 0
        candidates = [_recover(E[i : i + 3], x1, x2, mask) for i in range(0, len(E) - 2, 3)]
    except cv2.error:  # degenerate input OpenCV refuses
        return None
    if not candidates:
        return None
    best = max(candidates, key=lambda candidate: candidate[0])[1]
    inliers = np.zeros(len(xs), dtype=bool)
    inliers[np.flatnonzero(keep)] = best.inliers
    return Pose(best.R, best.t, inliers)


def _points(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    return np.ascontiguousarray(xs[:, :2]), np.ascontiguousarray(xs[:, 2:])


def rotation_error_deg(R: np.ndarray, R_gt: np.ndarray) -> float:
    """Geodesic angle between two rotations in degrees."""
    cosine = (np.trace(R_gt.T @ R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def translation_error_deg(t: np.ndarray, t_gt: np.ndarray) -> float:
    """Sign-agnostic angle between two translation directions in degrees, in [0, 90]."""
    cosine = abs(float(np.dot(t, t_gt))) / max(np.linalg.norm(t) * np.linalg.norm(t_gt), 1e-15)
    return float(np.degrees(np.arccos(min(cosine, 1.0))))


def pose_errors(pose: Pose | None, R_gt: np.ndarray, t_gt: np.ndarray) -> tuple[float, float]:
    """``(err_R, err_t)`` in degrees; a failed estimate (None) counts as ``(180°, 90°)``."""
    if pose is None:
        return FAILED_ROTATION_DEG, FAILED_TRANSLATION_DEG
    return rotation_error_deg(pose.R, R_gt), translation_error_deg(pose.t, t_gt)
