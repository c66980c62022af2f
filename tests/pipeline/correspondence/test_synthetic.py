"""The synthetic two-view generator and the Parquet shards it is stored in."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from models.cnet import essential_loss, weighted_eight_point
from pipeline.correspondence.data import PrepareOptions, load_pairs, prepare
from pipeline.correspondence.geometry import episym, homogeneous, pose_errors, pose_from_essential
from pipeline.correspondence.synthetic import SyntheticConfig, generate, generate_pair
from pipeline.correspondence.tables import MATCH_SCHEMA, PAIR_SCHEMA, read_pairs, write_pairs

SMALL = SyntheticConfig(n_matches=300)


def _ratio(pair) -> float:
    return float(re.search(r"outlier_ratio=([0-9.]+)", pair.source).group(1))


def test_same_seed_gives_byte_identical_shards(tmp_path):
    for name in ("a", "b"):
        write_pairs(generate(7, "train", 3, SMALL), tmp_path / name)
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
    assert generate_pair(7, "train", 3, SMALL).xs.tobytes() == generate_pair(7, "train", 3, SMALL).xs.tobytes()
    assert not np.array_equal(generate_pair(7, "train", 4, SMALL).xs, generate_pair(7, "train", 3, SMALL).xs)
    assert not np.array_equal(generate_pair(7, "test", 3, SMALL).xs, generate_pair(7, "train", 3, SMALL).xs)


def test_noise_free_inliers_satisfy_the_epipolar_constraint_exactly():
    pair = generate_pair(0, "test", 0, SyntheticConfig(n_matches=400, noise_px=0.0))
    inliers = pair.xs[pair.label == 1].astype(np.float64)
    residual = np.sum(homogeneous(inliers[:, 2:]) * (homogeneous(inliers[:, :2]) @ pair.E.T), axis=1)
    assert np.abs(residual).max() < 1e-6
    weights = torch.from_numpy((pair.label == 1).astype(np.float32))[None]
    e_hat = weighted_eight_point(torch.from_numpy(pair.xs)[None].double(), weights)
    assert float(essential_loss(e_hat, torch.from_numpy(pair.E)[None])) < 1e-9
    pose = pose_from_essential(e_hat[0].numpy().reshape(3, 3), pair.xs, pair.label == 1)
    assert max(pose_errors(pose, pair.R, pair.t)) < 1e-3


@pytest.mark.parametrize("index", range(5))
def test_labels_are_exactly_episym_below_threshold_with_an_outlier_margin(index):
    pair = generate_pair(1, "val", index, SMALL)
    distance = episym(pair.xs, pair.E)
    np.testing.assert_array_equal(pair.label == 1, distance < SMALL.threshold)
    assert distance[pair.label == 0].min() >= SMALL.outlier_margin * SMALL.threshold
    assert pair.xs.dtype == np.float32 and np.isfinite(pair.xs).all()


def test_outlier_fraction_is_rho_up_to_rounding():
    pair = generate_pair(0, "train", 0, SyntheticConfig(n_matches=301, outlier_ratio=0.75))
    assert int((pair.label == 0).sum()) == 301 - round(0.25 * 301)
    for pair in generate(0, "train", 10, SMALL):
        rho = _ratio(pair)
        assert 0.6 <= rho <= 0.9
        assert abs((pair.label == 0).sum() - rho * len(pair)) <= 1


def test_uniform_outliers_and_pose_ranges():
    pair = generate_pair(3, "train", 0, SyntheticConfig(n_matches=200, uniform_outlier_fraction=0.5))
    assert (pair.label == 0).sum() > 100
    angles = [pose_errors(None, p.R, p.t) for p in generate(0, "test", 3, SMALL)]
    assert all(np.isfinite(a).all() for a in angles)
    for p in generate(0, "test", 20, SMALL):
        np.testing.assert_allclose(p.R @ p.R.T, np.eye(3), atol=1e-12)
        assert abs(np.linalg.norm(p.t) - 1) < 1e-12
        assert 0.0 < np.degrees(np.arccos((np.trace(p.R) - 1) / 2)) < 40


def test_parquet_shards_round_trip(tmp_path):
    pairs = list(generate(0, "test", 7, SyntheticConfig(n_matches=50)))
    assert write_pairs(iter(pairs), tmp_path, pairs_per_shard=3) == 7
    assert sorted(path.name for path in tmp_path.glob("pairs-*.parquet")) == [
        "pairs-00000.parquet", "pairs-00001.parquet", "pairs-00002.parquet"]
    assert pq.read_schema(tmp_path / "matches-00000.parquet").names == MATCH_SCHEMA.names
    assert pq.read_schema(tmp_path / "pairs-00000.parquet").names == PAIR_SCHEMA.names
    loaded = read_pairs(tmp_path)
    assert [pair.pair_id for pair in loaded] == [pair.pair_id for pair in pairs]
    for original, copy in zip(pairs, loaded, strict=True):
        np.testing.assert_array_equal(original.xs, copy.xs)
        np.testing.assert_array_equal(original.label, copy.label)
        np.testing.assert_array_equal(original.episym, copy.episym)
        np.testing.assert_array_equal(original.R, copy.R)
        np.testing.assert_array_equal(original.E, copy.E)
        np.testing.assert_array_equal(original.K2, copy.K2)
    assert [pair.pair_id for pair in read_pairs(tmp_path, limit=4)] == [pair.pair_id for pair in pairs[:4]]
    row = pq.read_table(tmp_path / "pairs-00000.parquet").to_pylist()[0]
    np.testing.assert_allclose(np.reshape(row["E"], (3, 3)), pairs[0].E)


def test_prepare_writes_splits_and_a_manifest(tmp_path):
    options = PrepareOptions(seed=5, synthetic_pairs={"train": 3, "test": 2},
                             synthetic=SyntheticConfig(n_matches=40))
    manifest = prepare("synthetic", tmp_path / "synthetic", options=options)
    assert manifest["pairs"] == {"train": 3, "test": 2} and manifest["config"]["n_matches"] == 40
    pairs = load_pairs("synthetic", "test", folder=tmp_path / "synthetic")
    assert [pair.pair_id for pair in pairs] == ["synthetic/test/000000", "synthetic/test/000001"]
    np.testing.assert_array_equal(pairs[1].xs, generate_pair(5, "test", 1, SyntheticConfig(n_matches=40)).xs)
    assert not (tmp_path / ".synthetic.staging").exists()
