"""CNet / N³Net-CNet networks, the weighted eight-point and the losses."""

from __future__ import annotations

import math

import pytest
import torch

from models.cnet import (
    CorrespondenceNet,
    PointN3Block,
    classification_loss,
    context_norm,
    conv1x1,
    eight_point_rows,
    essential_loss,
    point_logits,
    weighted_eight_point,
)


def _count(network: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def test_parameter_counts_match_the_official_checkpoints():
    assert _count(CorrespondenceNet()) == 397_057
    assert _count(CorrespondenceNet(n3_k=3)) == 498_885


def test_n3_placement_and_widths():
    network = CorrespondenceNet(depth=4, channels=16, n3_k=3, n3_hidden=8)
    assert network.n3_position == 1
    assert network.blocks[1].convs[1].out_channels == 4 and network.blocks[2].convs[0].in_channels == 16
    with pytest.raises(ValueError, match="divisible"):
        CorrespondenceNet(channels=30, n3_k=3)


def test_initialisation_std_is_two_over_fan_in():
    torch.manual_seed(0)
    conv = conv1x1(128, 256)
    std = 2.0 / 128
    # a normal truncated at ±2σ has standard deviation 0.8796σ
    assert conv.weight.std().item() == pytest.approx(0.8796 * std, rel=0.05)
    assert conv.weight.abs().max().item() <= 2 * std and not conv.bias.any()


@pytest.mark.parametrize("n3_k", [None, 3])
@pytest.mark.parametrize("training", [False, True])
def test_logits_are_permutation_equivariant(n3_k, training):
    torch.manual_seed(0)
    network = CorrespondenceNet(depth=4, channels=16, n3_k=n3_k, n3_hidden=8).double().train(training)
    xs = torch.randn(2, 50, 4, dtype=torch.float64)
    order = torch.randperm(50)
    logits = network(xs)
    assert logits.shape == (2, 50)
    torch.testing.assert_close(network(xs[:, order]), logits[:, order])


def test_context_norm_normalises_each_sample_and_channel():
    x = torch.randn(3, 5, 40) * 7 + 2
    y = context_norm(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=1e-3)


def test_point_logits_are_scaled_negative_squared_distances_without_self():
    e = torch.randn(1, 3, 6, dtype=torch.float64)
    temperature = torch.rand(1, 1, 6, dtype=torch.float64)
    logits = point_logits(e, temperature)
    distance = ((e[0, :, :, None] - e[0, :, None, :]) ** 2).sum(0)
    expected = (-distance * temperature[0, 0, :, None]).fill_diagonal_(-math.inf)
    torch.testing.assert_close(logits[0], expected)


def test_point_n3_block_concatenates_input_and_k_neighbour_aggregates():
    torch.manual_seed(0)
    block = PointN3Block(channels=4, k=2, hidden=8)
    x = torch.randn(2, 4, 10)
    out = block(x)
    assert out.shape == (2, 12, 10)
    torch.testing.assert_close(out[:, :4], x)
    # each aggregate is a convex combination of the other points
    assert (out[:, 4:].abs().amax(-1) <= x.abs().amax(-1).repeat(1, 2) + 1e-6).all()


def test_eight_point_rows_vectorise_the_epipolar_constraint():
    xs = torch.randn(7, 4, dtype=torch.float64)
    E = torch.randn(3, 3, dtype=torch.float64)
    p1 = torch.cat([xs[:, :2], torch.ones(7, 1, dtype=torch.float64)], 1)
    p2 = torch.cat([xs[:, 2:], torch.ones(7, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(eight_point_rows(xs) @ E.flatten(), ((p2 @ E) * p1).sum(1))


def test_weighted_eight_point_drops_only_the_non_finite_sample_gradient():
    xs = torch.randn(2, 20, 4)
    weights = torch.rand(2, 20)
    weights[0] = 0.0  # M = 0: every eigenvalue repeated, the plain eigh gradient is NaN
    weights.requires_grad_(True)
    essential_loss(weighted_eight_point(xs, weights), torch.randn(2, 3, 3)).backward()
    assert torch.isfinite(weights.grad).all()
    assert not weights.grad[0].any() and weights.grad[1].abs().sum() > 0


def test_classification_loss_is_class_balanced_and_ignores_unknown_labels():
    logits = torch.zeros(1, 4)
    assert classification_loss(logits, torch.tensor([[1, 0, 0, -1]])).item() == pytest.approx(math.log(2))
    logits = torch.tensor([[2.0, -1.0, -3.0, 50.0]])
    expected = 0.5 * math.log1p(math.exp(-2)) + 0.5 * (math.log1p(math.exp(-1)) + math.log1p(math.exp(-3))) / 2
    assert classification_loss(logits, torch.tensor([[1, 0, 0, -1]])).item() == pytest.approx(expected, rel=1e-6)


def test_essential_loss_is_sign_and_scale_agnostic():
    E = torch.randn(1, 3, 3, dtype=torch.float64)
    e = E.flatten(1) / E.norm()
    assert essential_loss(-e, 5 * E).item() == pytest.approx(0.0, abs=1e-15)
    assert essential_loss(e, E).item() == pytest.approx(0.0, abs=1e-15)
