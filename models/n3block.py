"""The neural nearest neighbours (N³) block and its selection rules.

``select_neighbours`` is the heart of the paper: from per-candidate logits (−distance / temperature) it
produces ``k`` weight vectors over the candidates. :class:`N3Block` applies it to the overlapping patches of
an image. The rules:

``continuous``
    the paper's deterministic relaxation as the official code computes it: round ``j`` takes
    ``w = softmax(logits)`` and then lowers the (already tempered) logits by ``log(1 − w)``. As T → 0 round 1
    becomes the nearest neighbour; later rounds become hard kNN once ``1 − w`` of the chosen candidate
    underflows (logit gaps ≳ 37 in float64, ≳ 17 in float32). Before that they split between the nearest ones:
    adding ``log(1 − w)`` to tempered logits drops a sharply chosen logit only to about the next one.
``hard``
    plain k-nearest-neighbour selection: one-hot weights on the ``k`` largest logits, in order.
``stochastic``
    sampling without replacement from ``softmax(logits)`` (Gumbel-max), one-hot weights; the stochastic rule
    the relaxation takes the expectation of.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.dncnn import conv_stack, init_batchnorm

RULES = ("continuous", "hard", "stochastic")
_LOG_HALF = -math.log(2.0)


class _Log1mExp(torch.autograd.Function):
    """``log(1 − exp(x))`` for ``x ≤ 0``: exact forward, a gradient guarded against ``x → 0``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        low = x < _LOG_HALF
        return torch.where(
            low,
            torch.log1p(-torch.exp(torch.where(low, x, torch.full_like(x, -1.0)))),
            torch.log(-torch.expm1(torch.where(low, torch.full_like(x, -1.0), x))),
        )

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * -torch.exp(x) / (-torch.expm1(x) + 1e-7)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Numerically stable ``log(1 − exp(x))`` (``x ≤ 0``), differentiable with a guarded gradient."""
    return _Log1mExp.apply(x)


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, like.shape[-1]).to(like.dtype)


def select_neighbours(
    logits: torch.Tensor,
    k: int,
    rule: str = "continuous",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Weights ``(..., k, O)`` over ``O`` candidates from logits ``(..., O)`` (larger = closer).

    ``logits`` already include the temperature (``−d / T``). Candidates with logit ``−inf`` are never chosen.
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; valid rules: {', '.join(RULES)}")
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k = {k} must lie between 1 and the number of candidates ({logits.shape[-1]})")
    rounds = []
    for _ in range(k):
        if rule == "continuous":
            log_w = torch.log_softmax(logits, dim=-1)
            weights = log_w.exp()
            logits = logits + log1mexp(log_w)
        else:
            scores = logits.detach()
            if rule == "stochastic":
                uniform = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
                scores = scores - torch.log(-torch.log(uniform.clamp_min(1e-20)))
            weights = _one_hot(scores.argmax(dim=-1), logits)
            logits = logits.masked_fill(weights.bool(), float("-inf"))
        rounds.append(weights)
    return torch.stack(rounds, dim=-2)


EMBEDDINGS = ("learned", "identity")
TEMPERATURES = ("external", "scalar", "fixed")


def _padding(size: int, patch: int, stride: int) -> tuple[int, int]:
    """Zero padding (before, after) that makes ``size − patch`` a multiple of ``stride``; floor first."""
    total = -(size - patch) % stride
    return total // 2, total - total // 2


@dataclass(frozen=True)
class _AxisTile:
    """One run of query positions along a grid axis and the band of positions their windows cover."""

    queries: slice  # grid positions of the queries
    band: slice  # grid positions of the band
    local: torch.Tensor  # (t,) band-local positions of the queries
    windows: torch.Tensor  # (t, window) band-local positions of each query's window
    offsets: torch.Tensor  # (t,) position of each query inside its window
    pixels: torch.Tensor  # (t, patch) padded-map coordinates covered by each query's patch


def _axis_tiles(
    positions: int, tile: int, window: int, patch: int, stride: int, device: torch.device
) -> list[_AxisTile]:
    """Runs of ``tile`` queries; a query's window starts at ``clamp(q − window // 2, 0, positions − window)``."""
    length = min(tile + window - 1, positions)
    tiles = []
    for first in range(0, positions, tile):
        queries = torch.arange(first, min(first + tile, positions), device=device)
        band = min(max(first - window // 2, 0), positions - length)
        starts = (queries - window // 2).clamp(0, positions - window)
        tiles.append(
            _AxisTile(
                queries=slice(first, first + queries.numel()),
                band=slice(band, band + length),
                local=queries - band,
                windows=starts[:, None] - band + torch.arange(window, device=device),
                offsets=queries - starts,
                pixels=queries[:, None] * stride + torch.arange(patch, device=device),
            )
        )
    return tiles


@dataclass(frozen=True)
class _Tile:
    """A rectangle of query patches, the band of candidate patches around it, and their index tensors."""

    rows: slice  # query patch rows
    cols: slice  # query patch columns
    band_pixels: tuple[slice, slice]  # the band's region of the padded map
    queries: torch.Tensor  # (Q,) band-local indices of the queries
    candidates: torch.Tensor  # (Q, O) band-local indices of each query's candidates
    pixels: torch.Tensor  # (Q·p²,) flat padded-map pixel of every patch element, for folding


def _tile(row: _AxisTile, col: _AxisTile, width: int, patch: int, stride: int) -> _Tile:
    """Combine a row run and a column run; the query itself is dropped from its window."""
    band_cols, window_rows, window_cols = col.band.stop - col.band.start, row.windows.shape[1], col.windows.shape[1]
    window = (row.windows[:, None, :, None] * band_cols + col.windows[None, :, None, :]).flatten(0, 1).flatten(1)
    own = (row.offsets[:, None] * window_cols + col.offsets[None, :]).flatten()
    keep = torch.arange(window_rows * window_cols - 1, device=own.device).expand(own.numel(), -1)

    def pixels(axis: _AxisTile) -> slice:
        return slice(axis.band.start * stride, (axis.band.stop - 1) * stride + patch)

    return _Tile(
        rows=row.queries,
        cols=col.queries,
        band_pixels=(pixels(row), pixels(col)),
        queries=(row.local[:, None] * band_cols + col.local[None, :]).flatten(),
        candidates=window.gather(1, keep + (keep >= own[:, None])),
        pixels=(row.pixels[:, None, :, None] * width + col.pixels[None, :, None, :]).flatten(),
    )


class N3Block(nn.Module):
    """The N³ block on images: ``k`` soft nearest-neighbour volumes of the input's patches.

    Patches of ``patch_size`` at ``stride`` are cut from the zero-padded input ``Y``; each is matched, by
    squared Euclidean distance of embedding patches, against the other patches of a ``window``×``window`` grid
    block around it (shifted, never truncated, at the borders: always ``window² − 1`` candidates, so inputs
    must pad to at least :attr:`min_size` px a side).
    Logits ``BN(−d) / T`` feed :func:`select_neighbours` with ``rule`` (``stochastic`` draws from torch's global
    RNG); neighbour ``j`` is the weighted sum of candidate patches of ``Y``, folded back by averaging overlaps.
    Output: ``concat[Y, N_1 − Y, …, N_k − Y]``, ``(k + 1)·C`` channels.

    ``embedding``: ``learned`` (f_E, a conv stack) or ``identity`` (match the patches of ``Y`` itself).
    ``temperature``: ``external`` (T = temp_bias·exp(patch mean of the f_T map)), ``scalar`` (one learned
    log-T, starting at 0) or ``fixed`` (T = temp_bias). ``distance_bn``: BatchNorm1d over all distances.
    Queries are processed in ``tile``×``tile`` patch blocks against the band of patches their windows cover, so
    no (queries × candidates × features) tensor of the whole image is ever built and memory grows linearly with
    the pixels (one eval forward on 1×8×512×512 peaks ≈ 265 MB above its input; tests/models bound it at 400).
    """

    def __init__(
        self,
        in_channels: int = 8,
        k: int = 7,
        patch_size: int = 10,
        stride: int = 5,
        window: int = 15,
        rule: str = "continuous",
        embedding: str = "learned",
        temperature: str = "external",
        distance_bn: bool = True,
        temp_bias: float = 0.1,
        embed_channels: int = 8,
        embed_features: int = 64,
        embed_depth: int = 3,
        tile: int = 8,
    ) -> None:
        super().__init__()
        _check_choice("rule", rule, RULES)
        _check_choice("embedding", embedding, EMBEDDINGS)
        _check_choice("temperature", temperature, TEMPERATURES)
        if not 1 <= k < window * window:
            raise ValueError(f"k = {k} must lie between 1 and window² − 1 = {window * window - 1}")
        if temp_bias <= 0 or tile < 1 or not 0 < stride <= patch_size:
            raise ValueError("need temp_bias > 0, tile >= 1 and 0 < stride <= patch_size")
        self.in_channels, self.k, self.rule, self.temp_bias, self.tile = in_channels, k, rule, temp_bias, tile
        self.patch_size, self.stride, self.window = patch_size, stride, window

        def net(out_channels: int) -> nn.Sequential:
            return conv_stack(in_channels, embed_features, out_channels, embed_depth, head_bn=True)

        self.embedding = net(embed_channels) if embedding == "learned" else None
        self.temperature_net = net(1) if temperature == "external" else None
        self.log_temperature = nn.Parameter(torch.zeros(())) if temperature == "scalar" else None
        self.distance_bn = nn.BatchNorm1d(1) if distance_bn else None
        init_batchnorm(self)

    @property
    def out_channels(self) -> int:
        return (self.k + 1) * self.in_channels

    @property
    def min_size(self) -> int:
        """The smallest padded side the search window fits in (80 px for the paper's geometry)."""
        return self.patch_size + (self.window - 1) * self.stride

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        height, width = y.shape[-2:]
        p, s = self.patch_size, self.stride
        top, bottom = _padding(height, p, s)
        left, right = _padding(width, p, s)
        padded = (height + top + bottom, width + left + right)
        if min(padded) < self.min_size:
            raise ValueError(
                f"N3Block needs at least {self.min_size} px per side after padding (a {self.window}×"
                f"{self.window} window of {p} px patches at stride {s}); a {height}×{width} input pads to "
                f"{padded[0]}×{padded[1]}"
            )

        def pad(x: torch.Tensor) -> torch.Tensor:
            return F.pad(x, (left, right, top, bottom))

        y_pad = pad(y)
        e_pad = y_pad if self.embedding is None else pad(self.embedding(y))
        scores = self._normalise([self._scores(e_pad, tile) for tile in self._tiles(*padded, y.device)])
        log_t = self._log_temperature(pad, y)
        folded = y.new_zeros(y.shape[0], self.k * self.in_channels, padded[0] * padded[1])
        for tile, score in zip(self._tiles(*padded, y.device), scores, strict=True):
            self._aggregate(y_pad, tile, score, log_t, folded)
        folded = folded.view(y.shape[0], self.k, self.in_channels, *padded)
        folded /= self._overlaps(*padded, y)
        neighbours = folded[..., top : top + height, left : left + width] - y[:, None]
        return torch.cat([y, neighbours.flatten(1, 2)], dim=1)

    def _tiles(self, height: int, width: int, device: torch.device) -> Iterator[_Tile]:
        """Query tiles of the padded map's patch grid, in row-major order."""
        p, s, w = self.patch_size, self.stride, self.window
        rows, cols = (height - p) // s + 1, (width - p) // s + 1
        row_tiles = _axis_tiles(rows, self.tile, w, p, s, device)
        col_tiles = _axis_tiles(cols, self.tile, w, p, s, device)
        for row, col in itertools.product(row_tiles, col_tiles):
            yield _tile(row, col, width, p, s)

    def _band_patches(self, x: torch.Tensor, tile: _Tile) -> torch.Tensor:
        """``(B, N_band, C·p²)`` patches of the tile's band, in (channel, row, col) order."""
        return F.unfold(x[(..., *tile.band_pixels)], self.patch_size, stride=self.stride).transpose(1, 2)

    def _scores(self, e_pad: torch.Tensor, tile: _Tile) -> torch.Tensor:
        """Negated squared distances ``(B, Q, O)`` of the tile's queries to their candidates."""
        band = self._band_patches(e_pad, tile)
        norms = band.square().sum(-1)
        gram = torch.bmm(band[:, tile.queries], band.transpose(1, 2))
        inner = gram.gather(2, tile.candidates.expand(band.shape[0], -1, -1))
        return 2 * inner - norms[:, tile.queries, None] - norms[:, tile.candidates]

    def _normalise(self, scores: list[torch.Tensor]) -> list[torch.Tensor]:
        """The distance BatchNorm over all scores of the batch at once (one channel)."""
        if self.distance_bn is None:
            return scores
        joined = torch.cat(scores, dim=1)
        normalised = self.distance_bn(joined.reshape(-1, 1)).view_as(joined)
        return list(normalised.split([score.shape[1] for score in scores], dim=1))

    def _log_temperature(self, pad: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor) -> torch.Tensor | None:
        """log(T / temp_bias): per query patch ``(B, rows, cols)``, a scalar, or None (fixed T)."""
        if self.temperature_net is not None:
            return F.avg_pool2d(pad(self.temperature_net(y)), self.patch_size, self.stride)[:, 0]
        return self.log_temperature

    def _aggregate(
        self,
        y_pad: torch.Tensor,
        tile: _Tile,
        score: torch.Tensor,
        log_t: torch.Tensor | None,
        out: torch.Tensor,
    ) -> None:
        """Select the tile's neighbours, aggregate the candidate patches of Y and add them into ``out``."""
        logits = score / self.temp_bias
        if log_t is not None:
            temperature = log_t[:, tile.rows, tile.cols].flatten(1)[..., None] if log_t.ndim else log_t
            logits = logits * torch.exp(-temperature)
        weights = select_neighbours(logits, self.k, self.rule)
        batch, queries = weights.shape[:2]
        band = self._band_patches(y_pad, tile)
        index = tile.candidates[None, :, None].expand(batch, -1, self.k, -1)
        dense = weights.new_zeros(batch, queries, self.k, band.shape[1]).scatter(-1, index, weights)
        patches = torch.bmm(dense.flatten(1, 2), band).view(batch, queries, self.k, self.in_channels, -1)
        out.index_add_(2, tile.pixels, patches.permute(0, 2, 3, 1, 4).flatten(1, 2).flatten(2))

    def _overlaps(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """How many patches cover each pixel of the padded map, ``(height, width)``."""
        p, s = self.patch_size, self.stride

        def axis(size: int) -> torch.Tensor:
            starts = torch.arange(0, size - p + 1, s, device=like.device)
            count = like.new_zeros(size)
            return count.index_add_(
                0,
                (starts[:, None] + torch.arange(p, device=like.device)).flatten(),
                like.new_ones(starts.numel() * p),
            )

        return axis(height)[:, None] * axis(width)[None, :]


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
