"""Pose errors, CNet's mAP, RANSAC, degenerate pairs and the evaluation entry point."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.correspondence.data import PrepareOptions
from pipeline.correspondence.evaluate import (
    accuracy,
    compare_map,
    evaluate,
    evaluate_correspondence,
    inlier_scores,
    mean_average_precision,
    paired_bootstrap_ci,
)
from pipeline.correspondence.geometry import (
    FAILED_ROTATION_DEG,
    FAILED_TRANSLATION_DEG,
    episym,
    essential,
    pose_errors,
    pose_ransac,
    rotation_error_deg,
    translation_error_deg,
)
from pipeline.correspondence.methods import load_matcher, top_fraction
from pipeline.correspondence.synthetic import SyntheticConfig, generate_pair
from pipeline.correspondence.tables import Pair
from pipeline.errors import UserError

SMALL = SyntheticConfig(n_matches=200)


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(np.asarray(axis, float) / np.linalg.norm(axis) * np.radians(degrees))[0]


def test_angular_errors():
    R = _rotation([1, 2, 3], 12.0)
    assert rotation_error_deg(R, np.eye(3)) == pytest.approx(12.0)
    assert rotation_error_deg(R, R) == pytest.approx(0.0, abs=1e-6)
    t = np.array([1.0, 0.0, 0.0])
    assert translation_error_deg(-t, t) == pytest.approx(0.0)
    assert translation_error_deg(np.array([1.0, 1.0, 0.0]), t) == pytest.approx(45.0)
    assert pose_errors(None, R, t) == (FAILED_ROTATION_DEG, FAILED_TRANSLATION_DEG)


def test_episym_is_zero_on_exact_matches_and_scale_free():
    pair = generate_pair(0, "test", 0, SyntheticConfig(n_matches=100, noise_px=0.0))
    distance = episym(pair.xs, 3.0 * pair.E)
    np.testing.assert_allclose(distance, episym(pair.xs, pair.E), rtol=1e-9, atol=1e-15)
    assert distance[pair.label == 1].max() < 1e-9


def test_map_is_cnets_accumulated_accuracy():
    errors = np.array([1.0, 7.0, 12.0, 200.0])
    np.testing.assert_allclose(accuracy(errors), [0.25, 0.5, 0.75, 0.75, 0.75, 0.75])
    assert mean_average_precision(errors, 5) == pytest.approx(0.25)
    assert mean_average_precision(errors, 10) == pytest.approx(0.375)
    assert mean_average_precision(errors, 20) == pytest.approx((0.25 + 0.5 + 0.75 + 0.75) / 4)
    assert accuracy(np.array([30.0]))[-1] == 1.0 and accuracy(np.array([5.0]))[0] == 0.0
    with pytest.raises(ValueError):
        mean_average_precision(errors, 12)


def test_inlier_scores_use_known_labels_only():
    predicted = np.array([True, True, False, False, True])
    labels = np.array([1, 0, 1, 0, -1])
    precision, recall, f1 = inlier_scores(predicted, labels)
    assert (precision, recall, f1) == pytest.approx((0.5, 0.5, 0.5))
    assert np.isnan(inlier_scores(predicted, np.full(5, -1))).all()


def test_top_fraction_keeps_the_top_tenth():
    logits = np.arange(100, dtype=float)
    assert top_fraction(logits).sum() == 11  # o >= sorted_desc[10]
    assert top_fraction(np.array([1.0, 2.0, 3.0])).sum() == 2


def test_ransac_recovers_a_clean_pose_and_is_seeded():
    pair = generate_pair(0, "test", 1, SyntheticConfig(n_matches=300, outlier_ratio=0.3, noise_px=0.2))
    keep = np.ones(len(pair), dtype=bool)
    pose = pose_ransac(pair.xs, keep, threshold=1e-3, seed=3)
    assert max(pose_errors(pose, pair.R, pair.t)) < 2.0
    again = pose_ransac(pair.xs, keep, threshold=1e-3, seed=3)
    np.testing.assert_array_equal(pose.R, again.R)
    predicted, truth = pose.inliers, pair.label == 1
    assert (predicted & truth).sum() / predicted.sum() > 0.9 and (predicted & truth).sum() / truth.sum() > 0.8


def _broken_pairs() -> list[Pair]:
    good = generate_pair(0, "test", 2, SMALL)
    nan_some = good.subset(np.arange(len(good)))
    nan_some.xs[:5, 0] = np.nan
    too_few = good.subset(np.arange(5))
    collinear = good.subset(np.arange(20))
    collinear.xs[:, 1] = 2 * collinear.xs[:, 0] + 0.1
    all_nan = good.subset(np.arange(20))
    all_nan.xs[:] = np.nan
    for index, pair in enumerate([good, nan_some, too_few, collinear, all_nan]):
        pair.pair_id = f"p{index}"
    return [good, nan_some, too_few, collinear, all_nan]


@pytest.mark.parametrize("method", ["ransac", "cnet"])
def test_degenerate_pairs_count_as_failures_without_crashing(method):
    matcher = load_matcher(method) if method == "ransac" else _untrained_cnet()
    rows, summary = evaluate(matcher, _broken_pairs(), method)
    assert list(rows["degenerate"]) == ["", "", "too_few_matches", "collinear", "too_few_matches"]
    assert list(rows["nan_matches"]) == [0, 5, 0, 0, 20]
    assert rows.loc[2:, "failed"].all() and (rows.loc[2:, "err"] == FAILED_ROTATION_DEG).all()
    assert summary["n_pairs"] == 5 and summary["n_degenerate"] == 3 and summary["nan_matches"] == 25
    assert summary["degenerate_collinear"] == 1 and summary["degenerate_too_few_matches"] == 2
    assert summary["map20"] <= 0.4  # the three degenerate pairs stay in the denominator


def _untrained_cnet():
    from pipeline.correspondence.methods import CNet

    return CNet(depth=2, channels=8)


def test_paired_bootstrap():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    same = paired_bootstrap_ci(a, a, np.mean)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    shifted = paired_bootstrap_ci(a + 1.0, a, np.mean)
    assert shifted.estimate == shifted.low == shifted.high == pytest.approx(1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci(a, a[:3], np.mean)
    rows = pd.DataFrame({"dataset": "d", "pair_id": [f"p{i}" for i in range(4)] * 2,
                         "method": ["a"] * 4 + ["b"] * 4, "err": [1.0, 1.0, 50.0, 50.0] + [50.0] * 4})
    ci = compare_map(rows, "a", "b", threshold=10, n_boot=500)
    assert ci.estimate == pytest.approx(0.5) and ci.low <= 0.5 <= ci.high


def test_evaluate_correspondence_prepares_and_returns_json_ready_summary(tmp_path):
    options = PrepareOptions(synthetic_pairs={"test": 4}, synthetic=SyntheticConfig(n_matches=150))
    summary = evaluate_correspondence("ransac", "synthetic", folder=tmp_path / "synthetic", options=options,
                                      out=tmp_path / "eval", ransac_threshold=1e-3)
    json.dumps(summary)
    assert {"map5", "map10", "map20", "precision", "recall", "f1", "n_pairs", "opencv"} <= set(summary)
    assert summary["n_pairs"] == 4 and summary["ransac_threshold"] == 1e-3 and summary["method"] == "ransac"
    assert 0.0 <= summary["map5"] <= summary["map10"] <= summary["map20"] <= 1.0
    assert len(pd.read_parquet(tmp_path / "eval" / "per_pair.parquet")) == 4
    with pytest.raises(UserError, match="learned"):
        evaluate_correspondence("cnet", "synthetic", folder=tmp_path / "synthetic")
    with pytest.raises(UserError, match="no split"):
        evaluate_correspondence("ransac", "synthetic", split="val", folder=tmp_path / "synthetic")


def test_ransac_essential_is_consistent_with_its_pose():
    pair = generate_pair(0, "test", 3, SMALL)
    prediction = load_matcher("ransac").predict(pair)
    np.testing.assert_allclose(prediction.E, essential(prediction.pose.R, prediction.pose.t))
