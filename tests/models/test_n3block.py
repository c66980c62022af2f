"""The N³ block against a brute-force reference written here, plus its selection rules and memory use."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.n3block import N3Block, log1mexp, select_neighbours

TINY = {"patch_size": 4, "stride": 3, "window": 5, "k": 3, "embed_features": 4, "embed_channels": 3}


def _block(**kwargs: object) -> N3Block:
    """A float64 block with random (non-trivial) BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    block = N3Block(**kwargs).double()
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
        if block.log_temperature is not None:
            block.log_temperature.fill_(4.0)  # T ≈ 5.5: logits of a moderate spread
    return block


def _calibrated(block: N3Block, y: torch.Tensor) -> N3Block:
    """Set the distance-BN statistics from ``y`` (as training would), so that the logits have a moderate spread.

    Where one softmax weight comes within ~1e-6 of 1, ``log(1 − w)`` loses digits in any implementation that
    forms ``w`` (or ``log w``) first, as the official code does; the reference below does not.
    """
    bn = block.distance_bn
    if bn is not None:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass sets the batch statistics
        with torch.no_grad():
            block.train()(y)
    return block.eval()


# ---------------------------------------------------------------- brute-force reference


def _reference_weights(logits: torch.Tensor, k: int, rule: str) -> torch.Tensor:
    """``(k, O)`` weights: the relaxation, or one-hot on the k largest logits.

    The relaxation's ``log(1 − w_i)`` is taken as ``logsumexp_{j≠i} − logsumexp``: exact even where w_i ≈ 1.
    """
    if rule == "hard":
        order = torch.argsort(logits, descending=True, stable=True)[:k]
        return F.one_hot(order, logits.numel()).to(logits.dtype)
    others = torch.eye(logits.numel(), dtype=torch.bool)
    rounds = []
    for _ in range(k):
        rounds.append(torch.softmax(logits, dim=0))
        rest = logits.expand(logits.numel(), -1).masked_fill(others, float("-inf"))
        logits = logits + torch.logsumexp(rest, dim=1) - torch.logsumexp(logits, dim=0)
    return torch.stack(rounds)


def _reference(block: N3Block, y: torch.Tensor) -> torch.Tensor:
    """The block's output from explicit loops over query patches and their candidates (batch of one)."""
    p, s, w, k = block.patch_size, block.stride, block.window, block.k
    (_, channels, height, width), half = y.shape, w // 2
    pad_h, pad_w = (s - (height - p) % s) % s, (s - (width - p) % s) % s
    top, left = pad_h // 2, pad_w // 2

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (left, pad_w - left, top, pad_h - top))[0]

    y_pad = pad(y)
    e_pad = y_pad if block.embedding is None else pad(block.embedding(y))
    t_pad = None if block.temperature_net is None else pad(block.temperature_net(y))[0]
    rows, cols = (y_pad.shape[1] - p) // s + 1, (y_pad.shape[2] - p) // s + 1

    def patch(x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        return x[..., r * s : r * s + p, c * s : c * s + p]

    def candidates(r: int, c: int) -> list[tuple[int, int]]:
        r0, c0 = min(max(r - half, 0), rows - w), min(max(c - half, 0), cols - w)
        window = itertools.product(range(r0, r0 + w), range(c0, c0 + w))
        return [pos for pos in window if pos != (r, c)]

    queries = list(itertools.product(range(rows), range(cols)))
    scores = {
        q: torch.stack([-(patch(e_pad, *q) - patch(e_pad, *o)).square().sum() for o in candidates(*q)]) for q in queries
    }
    bn = block.distance_bn
    if bn is not None:
        every = torch.cat(list(scores.values()))
        mean, var = (every.mean(), every.var(unbiased=False)) if bn.training else (bn.running_mean, bn.running_var)
        scores = {q: (v - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias for q, v in scores.items()}
    total = torch.zeros(k, channels, *y_pad.shape[1:], dtype=y.dtype)
    count = torch.zeros(y_pad.shape[1:], dtype=y.dtype)
    for q in queries:
        temperature = torch.tensor(block.temp_bias, dtype=y.dtype)
        if t_pad is not None:
            temperature = temperature * torch.exp(patch(t_pad, *q).mean())
        elif block.log_temperature is not None:
            temperature = temperature * torch.exp(block.log_temperature)
        weights = _reference_weights(scores[q] / temperature, k, block.rule)
        stack = torch.stack([patch(y_pad, *o) for o in candidates(*q)])
        patch(total, *q)[...] += torch.einsum("jo,ochw->jchw", weights, stack)
        patch(count, *q)[...] += 1
    neighbours = (total / count)[..., top : top + height, left : left + width] - y
    return torch.cat([y, neighbours.flatten(0, 1)[None]], dim=1)


CONFIGS = {
    "learned-external-bn": {},
    "identity-scalar": {"embedding": "identity", "temperature": "scalar", "distance_bn": False},
    "learned-fixed": {"temperature": "fixed", "temp_bias": 0.5},
}


@pytest.mark.parametrize("rule", ["continuous", "hard"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("tile", [2, 3, 100])
def test_tiny_block_equals_the_brute_force_reference(rule, config, tile):
    block = _block(in_channels=2, rule=rule, tile=tile, **TINY, **CONFIGS[config]).eval()
    y = torch.randn(1, 2, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = block(y)
        torch.testing.assert_close(out, _reference(block, y), rtol=0, atol=1e-10)
    assert out.shape == (1, 2 * (TINY["k"] + 1), 20, 24)


def test_training_mode_normalises_distances_over_all_tiles_at_once():
    block = _block(in_channels=2, tile=2, **TINY).train()
    y = torch.randn(1, 2, 19, 22, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = block(y)
        torch.testing.assert_close(out, _reference(block, y), rtol=0, atol=1e-10)


def test_paper_geometry_equals_the_reference_and_keeps_224_candidates():
    y = torch.randn(1, 8, 82, 86, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    block = _calibrated(_block(in_channels=8, tile=4), y)  # patch 10, stride 5, 15×15 window, k = 7
    tiles = list(block._plan(85, 90).tiles(y.device))  # 82 → pad 1/2, 86 → pad 2/2
    assert {tuple(tile.candidates.shape[1:]) for tile in tiles} == {(224,)}
    owned = [
        (row, int(col))
        for tile in tiles
        for row in range(tile.rows.start, tile.rows.stop)
        for index, col in enumerate(tile.cols)
        if tile.owned is None or tile.owned.flatten()[index]
    ]
    assert sorted(owned) == [(row, col) for row in range(16) for col in range(17)]  # every query, once
    with torch.no_grad():
        torch.testing.assert_close(block(y), _reference(block, y), rtol=0, atol=1e-10)


def test_batch_items_are_independent_in_eval_mode():
    block = _block(in_channels=2, **TINY).eval()
    y = torch.randn(3, 2, 16, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        joint = block(y)
        single = torch.cat([block(item[None]) for item in y])
    torch.testing.assert_close(joint, single, rtol=0, atol=1e-12)


def test_inputs_smaller_than_the_window_are_refused_with_the_minimum_size():
    assert N3Block().min_size == 80
    with pytest.raises(ValueError, match="at least 80 px"):
        N3Block()(torch.zeros(1, 8, 70, 100))


# ---------------------------------------------------------------- selection rules


def test_log1mexp_is_accurate_on_both_branches():
    values = [-50.0, -3.0, -0.7, -0.69, -1e-3, -1e-12]
    with localcontext() as context:
        context.prec = 60
        expected = [float((1 - Decimal(v).exp()).ln()) for v in values]
    actual = log1mexp(torch.tensor(values, dtype=torch.float64))
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), rtol=1e-14, atol=0)


def test_continuous_rule_rounds_are_softmaxes_of_the_updated_logits():
    logits = torch.randn(5, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    weights = select_neighbours(logits, 4)
    for row, expected in zip(weights, logits, strict=True):
        torch.testing.assert_close(row, _reference_weights(expected, 4, "continuous"), rtol=0, atol=1e-14)


def test_relaxation_passes_gradcheck():
    logits = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert torch.autograd.gradcheck(lambda x: select_neighbours(x, 3), (logits.requires_grad_(),))


def test_block_passes_gradcheck_in_input_and_parameters():
    block = _block(in_channels=1, patch_size=2, stride=1, window=3, k=2, embed_features=3, embed_channels=2, tile=2)
    block.eval()
    y = torch.randn(1, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    assert torch.autograd.gradcheck(block, (y.requires_grad_(),))
    name = f"temperature_net.{len(block.temperature_net) - 1}.weight"

    def of_weight(value: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(block, {name: value}, (y.detach(),))

    weight = block.get_parameter(name).detach().clone()
    assert torch.autograd.gradcheck(of_weight, (weight.requires_grad_(),))


def test_hard_rule_picks_the_k_largest_logits_in_order():
    logits = torch.tensor([[0.1, 3.0, -2.0, 2.5, 0.0]])
    weights = select_neighbours(logits, 3, "hard")
    assert weights.argmax(-1).tolist() == [[1, 3, 0]]
    assert weights.sum(-1).tolist() == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize("rule", ["continuous", "hard", "stochastic"])
def test_minus_infinite_logits_are_never_chosen(rule):
    logits = torch.tensor([[0.0, float("-inf"), 1.0, 0.5]])
    weights = select_neighbours(logits, 3, rule, generator=torch.Generator().manual_seed(0))
    assert weights[..., 1].abs().max().item() == 0


def _separated_logits() -> torch.Tensor:
    """Logits whose sorted values are at least 0.9 apart (a shuffled ramp), 40 queries × 30 candidates."""
    generator = torch.Generator().manual_seed(8)
    ramps = [torch.randperm(30, generator=generator) for _ in range(40)]
    return -torch.stack(ramps).double() - 0.1 * torch.rand(40, 30, dtype=torch.float64, generator=generator)


def test_first_round_approaches_the_nearest_neighbour_as_temperature_goes_to_zero():
    logits = _separated_logits()
    nearest = select_neighbours(logits, 1, "hard")
    errors = [(select_neighbours(logits / t, 1) - nearest).abs().max().item() for t in (1.0, 0.3, 0.1, 0.01)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-12


def test_official_update_acts_on_tempered_logits():
    """``logits += log(1 − w)`` after dividing by T (as the official code): once round 1 is sharp, the chosen
    logit drops only to about the second one, so round 2 splits between the two nearest neighbours."""
    logits = torch.tensor([0.0, -1.0, -2.0, -3.5], dtype=torch.float64)
    weights = select_neighbours(logits / 0.1, 2)
    torch.testing.assert_close(weights[1], torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64), atol=1e-4, rtol=0)


def test_all_rounds_become_hard_knn_once_the_chosen_weight_rounds_to_one():
    """With logit gaps / T ≳ 37, ``1 − w`` underflows in float64, ``log(1 − w) = −inf`` and every round is
    exactly the hard kNN selection."""
    logits = _separated_logits()
    for t in (0.02, 1e-3, 1e-6):
        torch.testing.assert_close(select_neighbours(logits / t, 5), select_neighbours(logits, 5, "hard"))


def test_block_approaches_hard_knn_as_temperature_goes_to_zero():
    y = torch.randn(1, 2, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    base = {"in_channels": 2, "temperature": "fixed", "distance_bn": False, **TINY}
    with torch.no_grad():
        hard = _block(rule="hard", **base).eval()(y)
        errors = [(_block(temp_bias=t, **base).eval()(y) - hard).abs().max().item() for t in (1.0, 1e-6)]
    assert errors[0] > 0.1
    assert errors[1] < 1e-10


def test_stochastic_rule_samples_without_replacement_from_the_softmax():
    logits = torch.tensor([1.0, 0.0, -0.5, 0.7], dtype=torch.float64)
    draws = 40_000
    weights = select_neighbours(logits.expand(draws, -1), 2, "stochastic", generator=torch.Generator().manual_seed(10))
    first, second = weights[:, 0].mean(0), weights[:, 1].mean(0)
    p = torch.softmax(logits, 0)
    expected_second = torch.stack([sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j) for j in range(4)])
    torch.testing.assert_close(first, p, rtol=0, atol=0.01)
    torch.testing.assert_close(second, expected_second, rtol=0, atol=0.01)
    assert (weights.sum(1) <= 1).all()  # never the same candidate twice


def test_stochastic_block_copies_distinct_candidate_patches():
    """With stride = patch size the fold is the identity, so each neighbour is one whole candidate patch."""
    torch.manual_seed(11)
    block = N3Block(in_channels=1, patch_size=3, stride=3, window=3, k=4, rule="stochastic").double().eval()
    y = torch.randn(1, 1, 15, 15, dtype=torch.float64)
    with torch.no_grad():
        out = block(y)
    patches = F.unfold(y, 3, stride=3)[0].T  # (25 positions, 9)
    neighbours = F.unfold(out[:, 1:] + y, 3, stride=3)[0].T.reshape(25, 4, 9)
    for query in range(25):
        r, c = divmod(query, 5)
        r0, c0 = min(max(r - 1, 0), 2), min(max(c - 1, 0), 2)
        allowed = {i * 5 + j for i in range(r0, r0 + 3) for j in range(c0, c0 + 3)} - {query}
        picks = [int((patches - n).abs().sum(1).argmin()) for n in neighbours[query]]
        assert len(set(picks)) == 4 and set(picks) <= allowed
        torch.testing.assert_close(neighbours[query], patches[picks], rtol=0, atol=1e-12)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="valid"):
        N3Block(rule="soft")


# ---------------------------------------------------------------- memory

MEMORY_BOUND_MB = 400
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from models.n3block import N3Block
    torch.set_num_threads(2)
    block = N3Block(in_channels=8).eval()  # the N3Net block: learned embedding and temperature
    y = torch.rand(1, 8, 512, 512)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        out = block(y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.shape == (1, 64, 512, 512)
    print((peak - before) / 1024)
    """
)


def test_memory_on_a_512px_input_stays_bounded():
    """Peak RSS growth of one eval forward on 1×8×512×512 stays below ``MEMORY_BOUND_MB`` (400 MB).

    Measured ≈ 230 MB: the output (64 MiB), the neighbour volumes, the 64-channel activations of the embedding
    and temperature nets, and all 102·102·224 distances. Gathering every
    query's 224 candidate patches at once would instead need 102·102·224·800 floats ≈ 7.5 GB.
    """
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    growth_mb = float(result.stdout.strip())
    assert growth_mb < MEMORY_BOUND_MB, f"peak memory grew by {growth_mb:.0f} MB"


def test_n3block_gradients_do_not_depend_on_the_lean_mode() -> None:
    """Above ``lean_above`` pixels the block runs lean: the block's output and gradients stay the same."""
    results = []
    for lean_above in (0, 1 << 30):
        torch.manual_seed(0)
        block = N3Block(in_channels=2, lean_above=lean_above, tile=3, **TINY).double().train()
        y = torch.rand(2, 2, 23, 19, dtype=torch.float64, requires_grad=True)
        out = block(y)
        out.backward(torch.rand_like(out))
        results.append([out, y.grad, *(p.grad for p in block.parameters()), *block.buffers()])
    assert max((a - b).abs().max().item() for a, b in zip(*results, strict=True)) < 1e-10
