"""Training CNet / N³Net-CNet through the shared loop, saving, loading, and beating RANSAC."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.correspondence.data import PrepareOptions
from pipeline.correspondence.evaluate import compare_map, evaluate, evaluate_correspondence
from pipeline.correspondence.methods import load_matcher
from pipeline.correspondence.synthetic import SyntheticConfig, generate
from pipeline.correspondence.training import CorrespondenceTraining, cnet_schedule, collate, fit
from pipeline.errors import UserError

TINY = {"depth": 2, "channels": 8, "n3_hidden": 8}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny networks gain nothing from threads, and contended cores make them much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pairs(split: str, count: int, n: int = 64) -> list:
    return list(generate(0, split, count, SyntheticConfig(n_matches=n)))


def test_collate_truncates_to_the_smallest_pair_and_the_cap():
    pairs = _pairs("train", 3, 40)
    pairs[1] = pairs[1].subset(np.arange(30))
    batch = collate(pairs, step=7)
    assert batch.xs.shape == (3, 30, 4) and batch.labels.shape == (3, 30) and batch.step == 7
    torch.testing.assert_close(batch.xs[2], torch.from_numpy(pairs[2].xs[:30]))
    assert collate(pairs, max_matches=10).xs.shape == (3, 10, 4)


def test_essential_loss_joins_at_its_start_step():
    task = CorrespondenceTraining(_pairs("train", 4), [], "cnet", TINY, batch_size=2, essential_start=1)
    torch.manual_seed(0)
    network = task.build()
    rng = np.random.default_rng(0)
    first, second = task.batch(rng, torch.device("cpu")), task.batch(rng, torch.device("cpu"))
    assert (first.step, second.step, task.step) == (0, 1, 2)
    from models.cnet import classification_loss

    assert task.loss(network, first).item() == pytest.approx(classification_loss(network(first.xs),
                                                                                   first.labels).item())
    assert task.loss(network, second).item() > classification_loss(network(second.xs), second.labels).item()


def test_task_refuses_untrainable_methods_and_too_few_pairs():
    with pytest.raises(ValueError, match="not trainable"):
        CorrespondenceTraining(_pairs("train", 4), [], "ransac", batch_size=2)
    with pytest.raises(ValueError, match="batch size"):
        CorrespondenceTraining(_pairs("train", 2), [], "cnet", batch_size=4)


@pytest.mark.parametrize("method", ["cnet", "n3net-cnet"])
def test_fit_saves_a_model_that_load_matcher_restores(method, tmp_path, one_thread):
    task = CorrespondenceTraining(_pairs("train", 8), _pairs("val", 2), method, TINY, batch_size=4,
                                  essential_start=2)
    matcher = fit(task, cnet_schedule(4, validate_every=2, checkpoint_every=2), tmp_path / "scratch",
                  out=tmp_path / "model")
    loaded = load_matcher(method, tmp_path / "model" / "model.pt", threshold=1e-3)
    pair = _pairs("test", 1)[0]
    torch.testing.assert_close(loaded.logits(pair.xs), matcher.logits(pair.xs))
    assert loaded.settings()["ransac_threshold"] == 1e-3 and loaded.protocol == "ransac"
    resumed = CorrespondenceTraining(_pairs("train", 8), [], method, TINY, batch_size=4)
    fit(resumed, cnet_schedule(4), tmp_path / "scratch")  # already finished: resumes at step 4, trains no more
    assert resumed.step == 4
    other = "cnet" if method == "n3net-cnet" else "n3net-cnet"
    with pytest.raises(UserError, match="holds a"):
        load_matcher(other, tmp_path / "model" / "model.pt")
    options = PrepareOptions(synthetic_pairs={"test": 3}, synthetic=SyntheticConfig(n_matches=64))
    summary = evaluate_correspondence(method, "synthetic", weights=tmp_path / "model" / "model.pt",
                                      protocol="weighted8", folder=tmp_path / "data", options=options)
    assert summary["protocol"] == "weighted8" and summary["n_pairs"] == 3 and "map10" in summary


@pytest.mark.slow
def test_trained_cnet_and_n3net_cnet_beat_ransac(tmp_path, one_thread):
    """Tiny networks trained briefly on synthetic pairs (≈ 70 % outliers) beat RANSAC on mAP@10."""
    start = time.perf_counter()
    config = SyntheticConfig(n_matches=256)
    train, test = list(generate(0, "train", 200, config)), list(generate(0, "test", 40, config))
    frames = [evaluate(load_matcher("ransac"), test, "ransac")[0]]
    for method in ("cnet", "n3net-cnet"):
        task = CorrespondenceTraining(train, [], method, {"depth": 6, "channels": 64, "n3_hidden": 64},
                                      batch_size=16, essential_start=10**9)
        matcher = fit(task, cnet_schedule(200, validate_every=10**9, checkpoint_every=10**9), tmp_path / method)
        frames.append(evaluate(matcher, test, method)[0])
    rows = pd.concat(frames)
    summary = {method: compare_map(rows, method, "ransac", threshold=10, n_boot=1000)
               for method in ("cnet", "n3net-cnet")}
    for method, ci in summary.items():
        assert ci.estimate > 0.1 and ci.low > 0, f"{method} vs RANSAC mAP@10: {ci}"
    print("N3Net-CNet − CNet mAP@10:", compare_map(rows, "n3net-cnet", "cnet", threshold=10, n_boot=1000))
    assert time.perf_counter() - start < 180
