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

How the block computes (measurements in docs/performance.md): a patch is ``span × span`` blocks of ``g × g``
pixels, ``g = gcd(patch, stride)`` (2×2 blocks of 5×5 px in the paper's geometry), so the inner product of two
patches is the sum of ``span²`` block inner products. A tile of queries is matched by one GEMM of the blocks of
the band its windows cover against its own blocks, and its ``k`` neighbour volumes come from one GEMM of block
weights (each candidate weight added to the block pairs it covers) with the band's blocks of ``Y``. Tiles side
by side are batched. Both GEMM steps are autograd Functions with hand-written backward passes that keep only
their inputs and the continuous rule's weights (``k × candidates`` per query, the size of the logits times k);
above ``N3Block.lean_above`` pixels even those are recomputed tile by tile in the backward pass.
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
from models.striped import striped
from pipeline.errors import UserError

RULES = ("continuous", "hard", "stochastic")
_LOG_HALF = -math.log(2.0)


class InputTooSmallError(UserError, ValueError):
    """An input smaller than the block's search window (a ``window``×``window`` grid of patches)."""


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 − exp(x))`` for ``x ≤ 0``: ``log1p(−eˣ)`` below log ½, ``log(−expm1(x))`` above."""
    low = x < _LOG_HALF
    return torch.where(
        low,
        torch.log1p(-torch.exp(torch.where(low, x, -1.0))),
        torch.log(-torch.expm1(torch.where(low, -1.0, x))),
    )


def _log1mexp_slope(x: torch.Tensor) -> torch.Tensor:
    """The guarded derivative of :func:`_log1mexp`: ``−eˣ / (−expm1(x) + 1e−7)``."""
    return -torch.exp(x) / (-torch.expm1(x) + 1e-7)


class _Log1mExp(torch.autograd.Function):
    """``log(1 − exp(x))`` for ``x ≤ 0``: exact forward, a gradient guarded against ``x → 0``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _log1mexp(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * _log1mexp_slope(x)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Numerically stable ``log(1 − exp(x))`` (``x ≤ 0``), differentiable with a guarded gradient."""
    return _Log1mExp.apply(x)


@dataclass(frozen=True)
class _Rounds:
    """The continuous rule's weights ``(..., k, O)`` and, for every round but the last, the largest log-weight
    ``(..., 1)`` and its place: the one weight that can exceed ½, where ``log(1 − w)`` takes the exact branch."""

    weights: torch.Tensor
    tops: list[torch.Tensor]
    places: list[torch.Tensor]


def _relax(logits: torch.Tensor, k: int) -> _Rounds:
    """k rounds of ``w = softmax(logits)``, ``logits += log(1 − w)``, with ``log(1 − w)`` exactly as
    :func:`_log1mexp` of ``log w`` gives it: ``log1p(−w)``, except at a row's largest weight."""
    rounds = _Rounds(logits.new_empty(*logits.shape[:-1], k, logits.shape[-1]), [], [])
    for index in range(k):
        log_weights = torch.log_softmax(logits, dim=-1)
        weights = torch.exp(log_weights, out=rounds.weights[..., index, :])
        if index < k - 1:
            top, place = log_weights.max(dim=-1, keepdim=True)
            update = torch.neg(weights, out=log_weights).log1p_().scatter_(-1, place, _log1mexp(top))
            logits = logits + update if index == 0 else logits.add_(update)  # never the caller's tensor
            rounds.tops.append(top)
            rounds.places.append(place)
    return rounds


def _relax_backward(grad: torch.Tensor, rounds: _Rounds) -> torch.Tensor:
    """The logits' gradient from the gradient ``(..., k, O)`` of the weights of :func:`_relax`.

    The slope of ``log(1 − w)`` in ``log w`` is :func:`_log1mexp_slope`, with ``−expm1(log w)`` taken as
    ``1 − w`` except at a row's largest weight (where ``1 − w`` could lose digits).
    """
    grad_logits = torch.zeros_like(grad[..., 0, :])
    for index in reversed(range(grad.shape[-2])):
        weights = rounds.weights[..., index, :]
        grad_log = grad[..., index, :] * weights
        if index < len(rounds.tops):
            slope = weights / (weights - (1 + 1e-7))
            slope.scatter_(-1, rounds.places[index], _log1mexp_slope(rounds.tops[index]))
            grad_log += grad_logits * slope
        grad_logits += grad_log - weights * grad_log.sum(-1, keepdim=True)
    return grad_logits


class _Relaxation(torch.autograd.Function):
    """The continuous rule's weights; keeps only the logits and recomputes the rounds in the backward pass."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, k: int) -> torch.Tensor:
        ctx.k = k
        ctx.save_for_backward(logits)
        return _relax(logits, k).weights

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (logits,) = ctx.saved_tensors
        return _relax_backward(grad, _relax(logits, ctx.k)), None


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
    if rule == "continuous":
        return _Relaxation.apply(logits, k)
    rounds = []
    for _ in range(k):
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
class _Tile:
    """``count`` equal query tiles side by side, the bands of patches their windows cover, and index tensors.

    Grid positions count patches, block positions count ``g × g`` blocks. Columns of the ``count`` tiles are
    listed tile after tile; ``queries`` and ``candidates`` index each tile's band (row-major). The last tile of a
    row may overlap the one before it (all tiles have the same width): the queries it shares are computed twice
    but counted once, through ``owned``.
    """

    rows: slice  # grid rows of the queries (shared by the tiles)
    cols: torch.Tensor  # (count·width,) grid columns of the queries of all tiles
    owned: torch.Tensor | None  # (count, width) whether a tile's column is its own, None when all are
    count: int
    band_rows: slice  # grid rows of the bands
    band_cols: torch.Tensor  # (count·band width,) grid columns of each band
    block_rows: slice  # block rows of the queries' patches
    block_cols: torch.Tensor  # (count·block width,) block columns of each tile's patches
    band_block_rows: slice
    band_block_cols: torch.Tensor  # (count·band block width,) block columns of each band
    queries: torch.Tensor  # (count·Q,) band-local index of each query
    candidates: torch.Tensor  # (count·Q, O) band-local indices of each query's candidates

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Query rows and columns of one tile, then rows and columns of its band."""
        rows, band_rows = self.rows.stop - self.rows.start, self.band_rows.stop - self.band_rows.start
        return rows, self.cols.numel() // self.count, band_rows, self.band_cols.numel() // self.count

    @property
    def block_shape(self) -> tuple[int, int, int, int]:
        """The same in blocks: the blocks of the queries' patches and of the band's patches."""
        rows = self.block_rows.stop - self.block_rows.start
        band_rows = self.band_block_rows.stop - self.band_block_rows.start
        return rows, self.block_cols.numel() // self.count, band_rows, self.band_block_cols.numel() // self.count

    def index(
        self, flat: torch.Tensor, batch: int, middle: tuple[int, ...] = (), tail: tuple[int, ...] = (-1,)
    ) -> torch.Tensor:
        """An index listed tile after tile as ``(batch, count, *middle, *tail)``, expanded over batch and middle."""
        flat = flat.view(1, self.count, *(1 for _ in middle), *tail)
        return flat.expand(batch, -1, *middle, *(-1 for _ in tail))


@dataclass(frozen=True)
class _Plan:
    """The patch grid of a padded map, its ``g × g`` block decomposition and its query tiles."""

    rows: int
    cols: int
    window: int
    tile: int
    block: int  # g = gcd(patch, stride), in pixels
    span: int  # blocks per patch side
    step: int  # blocks per stride

    @property
    def candidates(self) -> int:
        return self.window * self.window - 1

    def extent(self, positions: int) -> int:
        """Blocks along an axis covered by ``positions`` consecutive patches."""
        return (positions - 1) * self.step + self.span

    def offsets(self) -> list[tuple[int, int]]:
        """The block offsets ``(a, b)`` inside a patch."""
        return list(itertools.product(range(self.span), repeat=2))

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, H/g, W/g, C·g²)``."""
        g = self.block
        blocks = x.unflatten(3, (-1, g)).unflatten(2, (-1, g)).permute(0, 2, 4, 1, 3, 5)
        return blocks.flatten(3)

    def pixels(self, blocks: slice) -> slice:
        """The pixel rows (or columns) of a run of block rows (or columns)."""
        return slice(blocks.start * self.block, blocks.stop * self.block)

    def to_image(self, blocks: torch.Tensor, k: int) -> torch.Tensor:
        """``(B, H/g, W/g, k·C·g²)`` → a new ``(B, k, C, H, W)``."""
        g, (batch, rows, cols) = self.block, blocks.shape[:3]
        image = blocks.new_empty(batch, k, blocks.shape[3] // (k * g * g), rows * g, cols * g)
        source = blocks.view(batch, rows, cols, k, -1, g, g).permute(0, 3, 4, 1, 5, 2, 6)
        image.view(batch, k, -1, rows, g, cols, g).copy_(source)
        return image

    def shift(self, a: int, b: int, *sizes: int) -> tuple[slice, ...]:
        """For axes (row, col, row, col, …) of ``sizes`` patches: the slices of a block tensor that hold the
        block at offset ``(a, b)`` inside each patch."""
        offsets = itertools.cycle((a, b))
        return tuple(slice(o, o + (n - 1) * self.step + 1, self.step) for o, n in zip(offsets, sizes, strict=False))

    def norms(self, blocks: torch.Tensor) -> torch.Tensor:
        """Squared norms ``(B, rows, cols)`` of the patches."""
        squares = blocks.square().sum(-1)
        return sum(squares[(slice(None), *self.shift(a, b, self.rows, self.cols))] for a, b in self.offsets())

    def norms_backward(self, grad: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """The blocks' gradient from the gradient of :meth:`norms`."""
        grad_squares = grad.new_zeros(blocks.shape[:-1])
        for a, b in self.offsets():
            grad_squares[(slice(None), *self.shift(a, b, self.rows, self.cols))] += grad
        return 2 * blocks * grad_squares[..., None]

    def tiles(self, device: torch.device) -> Iterator[_Tile]:
        """Rows of ``tile × tile`` query tiles, row-major: lower at the bottom edge; at the right edge the last
        tile is moved left to keep its width (one batch per row), overlapping its neighbour."""
        width = min(self.tile, self.cols)
        count = -(-self.cols // width)
        firsts = (width * torch.arange(count, device=device)).clamp_max(self.cols - width)
        for first_row in range(0, self.rows, self.tile):
            yield self._tile(first_row, min(self.tile, self.rows - first_row), firsts, width, device)

    def _tile(self, first_row: int, height: int, firsts: torch.Tensor, width: int, device: torch.device) -> _Tile:
        row = _Axis.of(torch.tensor([first_row], device=device), height, self.rows, self.window)
        col = _Axis.of(firsts, width, self.cols, self.window)
        count = firsts.numel()
        owned = col.queries >= width * torch.arange(count, device=device)[:, None]
        band_width, window = col.length, self.window
        grid = (row.windows[:, :, None, :, None] * band_width + col.windows[:, None, :, None, :]).flatten(3)
        own = (row.offsets[:, :, None] * window + col.offsets[:, None, :]).flatten(1)
        keep = torch.arange(self.candidates, device=device).expand(*own.shape, -1)
        candidates = grid.flatten(1, 2).gather(-1, keep + (keep >= own[..., None]))
        band_row = int(row.bands[0])

        def blocks(starts: torch.Tensor, positions: int) -> torch.Tensor:
            return (starts[:, None] * self.step + torch.arange(self.extent(positions), device=device)).flatten()

        return _Tile(
            rows=slice(first_row, first_row + height),
            cols=col.queries.flatten(),
            owned=None if bool(owned.all()) else owned,
            count=count,
            band_rows=slice(band_row, band_row + row.length),
            band_cols=(col.bands[:, None] + torch.arange(band_width, device=device)).flatten(),
            block_rows=slice(first_row * self.step, first_row * self.step + self.extent(height)),
            block_cols=blocks(col.queries[:, 0], width),
            band_block_rows=slice(band_row * self.step, band_row * self.step + self.extent(row.length)),
            band_block_cols=blocks(col.bands, band_width),
            queries=(row.local[:, :, None] * band_width + col.local[:, None, :]).flatten(),
            candidates=candidates.flatten(0, 1),
        )


@dataclass(frozen=True)
class _Axis:
    """Runs of query positions along one grid axis (one per tile) and the bands their windows cover."""

    queries: torch.Tensor  # (count, size) grid positions
    bands: torch.Tensor  # (count,) first grid position of each band
    length: int  # band length
    local: torch.Tensor  # (count, size) band-local positions of the queries
    windows: torch.Tensor  # (count, size, window) band-local positions of each query's window
    offsets: torch.Tensor  # (count, size) position of each query inside its window

    @classmethod
    def of(cls, firsts: torch.Tensor, size: int, positions: int, window: int) -> _Axis:
        """A query's window starts at ``clamp(q − window // 2, 0, positions − window)``."""
        length = min(size + window - 1, positions)
        bands = (firsts - window // 2).clamp(0, positions - length)
        queries = firsts[:, None] + torch.arange(size, device=firsts.device)
        starts = (queries - window // 2).clamp(0, positions - window)
        return cls(
            queries=queries,
            bands=bands,
            length=length,
            local=queries - bands[:, None],
            windows=(starts - bands[:, None])[..., None] + torch.arange(window, device=firsts.device),
            offsets=queries - starts,
        )


def _pairs(tile: _Tile, plan: _Plan) -> torch.Tensor:
    """``(span², count, Q·O)``: per block offset, the flat (band block, query block) index of every candidate."""
    rows, cols, _, band_cols = tile.shape
    block_rows, block_cols, _, band_block_cols = tile.block_shape
    query_area = block_rows * block_cols
    candidates = tile.candidates.view(tile.count, rows * cols, -1)
    query = torch.arange(rows * cols, device=candidates.device)[:, None]
    base = (candidates // band_cols * band_block_cols + candidates % band_cols) * query_area
    base = (base + query // cols * block_cols + query % cols) * plan.step
    offsets = [(a * band_block_cols + b) * query_area + a * block_cols + b for a, b in plan.offsets()]
    return torch.stack([base + offset for offset in offsets]).flatten(2)


def _gather(x: torch.Tensor, rows: slice, cols: torch.Tensor, count: int) -> torch.Tensor:
    """``(B, R, C, *rest)`` → ``(B, count, rows, cols / count, *rest)``: ``count`` regions side by side, copied."""
    return x[:, rows].index_select(2, cols).unflatten(2, (count, -1)).transpose(1, 2).contiguous()


def _scatter(x: torch.Tensor, rows: slice, cols: torch.Tensor, values: torch.Tensor) -> None:
    """Add ``values`` ``(B, count, rows, cols / count, *rest)`` into the regions of ``x`` (the adjoint of
    :func:`_gather`)."""
    x[:, rows].index_add_(2, cols, values.transpose(1, 2).flatten(2, 3))


def _take(x: torch.Tensor, tile: _Tile) -> torch.Tensor:
    """The tiles' queries ``(B, count, rows · cols, *rest)`` of a ``(B, rows, cols, *rest)`` tensor, copied."""
    return _gather(x, tile.rows, tile.cols, tile.count).flatten(2, 3)


def _put(x: torch.Tensor, tile: _Tile, values: torch.Tensor, add: bool = False) -> None:
    """Write (or ``add``) the tiles' query values ``(B, count, rows · cols, *rest)`` into their own places of
    ``x`` ``(B, rows, cols, *rest)``; the values of queries a tile does not own are dropped."""
    values = values.unflatten(2, tile.shape[:2]).transpose(1, 2).flatten(2, 3)
    cols = tile.cols
    if tile.owned is not None:
        own = tile.owned.flatten().nonzero().squeeze(1)
        values, cols = values.index_select(2, own), cols[own]
    target = x[:, tile.rows]
    target.index_add_(2, cols, values) if add else target.index_copy_(2, cols, values)


def _owned(values: torch.Tensor, tile: _Tile) -> torch.Tensor:
    """``values`` ``(B, count, rows · cols, *rest)`` with zeros at the queries the tiles do not own."""
    if tile.owned is None:
        return values
    rows, cols = tile.shape[:2]
    mask = tile.owned[:, None, :].expand(-1, rows, -1).reshape(tile.count, rows * cols)
    return values * mask.view(1, tile.count, -1, *(1 for _ in values.shape[3:])).to(values.dtype)


def _tile_blocks(blocks: torch.Tensor, tile: _Tile) -> tuple[torch.Tensor, torch.Tensor]:
    """The blocks of the tiles' query patches and of their bands, ``(B, count, rows · cols, D)`` each."""
    queries = _gather(blocks, tile.block_rows, tile.block_cols, tile.count)
    band = _gather(blocks, tile.band_block_rows, tile.band_block_cols, tile.count)
    return queries.flatten(2, 3), band.flatten(2, 3)


class _Distances(torch.autograd.Function):
    """Negated squared distances ``(B, rows, cols, O)`` of every query patch to its candidates, from the blocks
    ``(B, H/g, W/g, D)`` of the embedding. Per tile: one GEMM of band blocks × query blocks; a candidate's inner
    product is the sum of the ``span²`` block products at the same offset in both patches."""

    @staticmethod
    def forward(ctx, blocks: torch.Tensor, plan: _Plan) -> torch.Tensor:
        ctx.plan = plan
        ctx.save_for_backward(blocks)
        batch, norms = blocks.shape[0], plan.norms(blocks)
        out = blocks.new_empty(batch, plan.rows, plan.cols, plan.candidates)
        for tile in plan.tiles(blocks.device):
            queries, band = _tile_blocks(blocks, tile)
            gram = (band @ queries.transpose(2, 3)).flatten(2)
            inner = sum(gram.gather(2, tile.index(pairs, batch)) for pairs in _pairs(tile, plan))
            band_norms = _gather(norms, tile.band_rows, tile.band_cols, tile.count).flatten(2)
            query_norms = band_norms.gather(2, tile.index(tile.queries, batch))
            candidate_norms = band_norms.gather(2, tile.index(tile.candidates, batch))
            scores = 2 * inner - candidate_norms
            scores = scores.view(batch, tile.count, -1, plan.candidates) - query_norms[..., None]
            _put(out, tile, scores)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (blocks,) = ctx.saved_tensors
        plan, batch = ctx.plan, blocks.shape[0]
        grad_blocks, grad_norms = torch.zeros_like(blocks), blocks.new_zeros(batch, plan.rows, plan.cols)
        for tile in plan.tiles(blocks.device):
            scores = _owned(_take(grad, tile), tile)
            _put(grad_norms, tile, -scores.sum(-1), add=True)
            band_norms = scores.new_zeros(batch, tile.count, tile.shape[2] * tile.shape[3])
            band_norms.scatter_add_(2, tile.index(tile.candidates, batch), scores.flatten(2))
            _scatter(grad_norms, tile.band_rows, tile.band_cols, -band_norms.unflatten(2, tile.shape[2:]))
            _gram_backward(2 * scores.flatten(2), blocks, tile, plan, grad_blocks)
        return grad_blocks + plan.norms_backward(grad_norms, blocks), None


def _gram_backward(grad: torch.Tensor, blocks: torch.Tensor, tile: _Tile, plan: _Plan, out: torch.Tensor) -> None:
    """Add to ``out`` the blocks' gradient from the gradient ``(B, count, Q·O)`` of the candidates' inner products."""
    queries, band = _tile_blocks(blocks, tile)
    grad_gram = grad.new_zeros(*grad.shape[:2], band.shape[2] * queries.shape[2])
    for pairs in _pairs(tile, plan):
        grad_gram.scatter_add_(2, tile.index(pairs, grad.shape[0]), grad)
    grad_gram = grad_gram.view(*grad.shape[:2], band.shape[2], queries.shape[2])
    block_rows, block_cols, band_block_rows, band_block_cols = tile.block_shape
    grad_queries = (grad_gram.transpose(2, 3) @ band).unflatten(2, (block_rows, block_cols))
    grad_band = (grad_gram @ queries).unflatten(2, (band_block_rows, band_block_cols))
    _scatter(out, tile.block_rows, tile.block_cols, grad_queries)
    _scatter(out, tile.band_block_rows, tile.band_block_cols, grad_band)


class _Aggregate(torch.autograd.Function):
    """The neighbour volumes ``(B, k, C, H, W)`` on the padded map, summed (not yet averaged) over overlaps.

    ``selection`` holds the logits ``(B, rows, cols, O)`` of the continuous rule (``relax``: the rounds run here
    and are kept for the backward pass if ``keep``, else run again there) or fixed weights ``(B, rows, cols, k, O)``.
    Per tile, the weights are moved onto (query block, band block) pairs and multiplied with the band's blocks of
    ``y``; the volumes are summed in blocks ``(B, H/g, W/g, k·C·g²)``.
    """

    @staticmethod
    def forward(
        ctx, selection: torch.Tensor, blocks: torch.Tensor, plan: _Plan, k: int, relax: bool, keep: bool
    ) -> torch.Tensor:
        ctx.plan, ctx.k, ctx.relax, ctx.kept = plan, k, relax, []
        ctx.save_for_backward(selection, blocks)
        keep = keep and any(ctx.needs_input_grad[:2])  # no backward pass without gradients
        out, scratch = blocks.new_zeros(*blocks.shape[:3], k * blocks.shape[3]), _Scratch()
        for tile in plan.tiles(blocks.device):
            rounds = _weights(selection, tile, k, relax)
            if keep:
                ctx.kept.append(rounds)
            weights = rounds.weights
            band = _gather(blocks, tile.band_block_rows, tile.band_block_cols, tile.count).flatten(2, 3)
            volumes = _block_weights(weights, tile, plan, scratch) @ band
            _scatter(out, tile.block_rows, tile.block_cols, volumes.view(*volumes.shape[:2], *tile.block_shape[:2], -1))
        return plan.to_image(out, k)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, None, None, None, None]:
        selection, blocks = ctx.saved_tensors
        plan, grad = ctx.plan, grad.flatten(1, 2)
        grad_selection = torch.zeros_like(selection) if ctx.needs_input_grad[0] else None
        grad_blocks, scratch = torch.zeros_like(blocks), _Scratch()
        for index, tile in enumerate(plan.tiles(blocks.device)):
            rounds = ctx.kept[index] if ctx.kept else _weights(selection, tile, ctx.k, ctx.relax)
            band = _gather(blocks, tile.band_block_rows, tile.band_block_cols, tile.count)
            grad_volumes = _tile_volumes(grad, tile, plan).view(*band.shape[:2], -1, blocks.shape[3])
            grad_band = _block_weights(rounds.weights, tile, plan, scratch).transpose(2, 3) @ grad_volumes
            _scatter(grad_blocks, tile.band_block_rows, tile.band_block_cols, grad_band.view_as(band))
            if grad_selection is not None:
                grad_pairs = grad_volumes @ band.flatten(2, 3).transpose(2, 3)
                grad_weights = _block_weights_backward(grad_pairs, tile, plan, rounds.weights.shape)
                if ctx.relax:
                    grad_weights = _relax_backward(grad_weights, rounds)
                _put(grad_selection, tile, grad_weights)
        return grad_selection, grad_blocks, None, None, None, None


def _tile_volumes(image: torch.Tensor, tile: _Tile, plan: _Plan) -> torch.Tensor:
    """The tiles' query blocks ``(B, count, rows, cols, k·C·g²)`` of an image ``(B, k·C, H, W)``, converted to
    blocks one tile row at a time (no blocks copy of the whole image)."""
    rows = plan.to_blocks(image[:, :, plan.pixels(tile.block_rows)])
    return _gather(rows, slice(None), tile.block_cols, tile.count)


def _weights(selection: torch.Tensor, tile: _Tile, k: int, relax: bool) -> _Rounds:
    """The tiles' weights ``(B, count, Q, k, O)``: the continuous rule's rounds, or the given weights."""
    selection = _take(selection, tile)
    return _relax(selection, k) if relax else _Rounds(selection, [], [])


class _Scratch:
    """Zeroed scratch tensors reused from tile to tile: fresh ones of a few MB page-fault on every tile."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def zeros(self, name: str, like: torch.Tensor, *shape: int) -> torch.Tensor:
        size, buffer = math.prod(shape), self._buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers[name] = like.new_empty(size)
        return buffer[:size].view(shape).zero_()


def _block_weights(weights: torch.Tensor, tile: _Tile, plan: _Plan, scratch: _Scratch) -> torch.Tensor:
    """Weights ``(B, count, Q, k, O)`` → ``(B, count, query blocks · k, band blocks)``.

    A candidate's weight is added to every (query block, candidate block) pair at the same offset in the two
    patches, so one product with the band's blocks yields the neighbour patches summed over their overlaps.
    """
    batch, count, queries, k, _ = weights.shape
    rows, cols, band_rows, band_cols = tile.shape
    weights = _owned(weights, tile)
    dense = scratch.zeros("dense", weights, batch, count, queries, k, band_rows * band_cols)
    dense.scatter_(4, _candidate_index(tile, batch, queries, k), weights)
    dense = dense.view(batch, count, rows, cols, k, band_rows, band_cols)
    block_rows, block_cols, band_block_rows, band_block_cols = tile.block_shape
    out = scratch.zeros("blocks", weights, batch, count, block_rows, block_cols, k, band_block_rows, band_block_cols)
    for row, col, band_row, band_col in _shifts(tile, plan):
        out[:, :, row, col, :, band_row, band_col] += dense
    return out.view(batch, count, block_rows * block_cols * k, -1)


def _block_weights_backward(grad: torch.Tensor, tile: _Tile, plan: _Plan, shape: torch.Size) -> torch.Tensor:
    """The weights' gradient ``(B, count, Q, k, O)`` from the gradient ``(B, count, query blocks · k, band blocks)``
    of :func:`_block_weights`: its shifted sums taken back, then each candidate's entry picked."""
    batch, count, queries, k, _ = shape
    block_rows, block_cols, band_block_rows, band_block_cols = tile.block_shape
    grad = grad.view(batch, count, block_rows, block_cols, k, band_block_rows, band_block_cols)
    shifted = (grad[:, :, row, col, :, band_row, band_col] for row, col, band_row, band_col in _shifts(tile, plan))
    dense = sum(shifted).reshape(batch, count, queries, k, -1)
    return dense.gather(4, _candidate_index(tile, batch, queries, k))


def _shifts(tile: _Tile, plan: _Plan) -> Iterator[tuple[slice, ...]]:
    """Per block offset in a patch: the (query row, col, band row, col) slices of :func:`_block_weights`."""
    return (plan.shift(a, b, *tile.shape) for a, b in plan.offsets())


def _candidate_index(tile: _Tile, batch: int, queries: int, k: int) -> torch.Tensor:
    """``(B, count, Q, k, O)``: the band-local index of each query's candidates, for every round."""
    return tile.index(tile.candidates, batch, tail=(queries, 1, -1)).expand(-1, -1, -1, k, -1)


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
    Queries are processed in ``tile``×``tile`` patch blocks against the band of patches their windows cover
    (speed and memory only, results identical), so memory grows linearly with the pixels: besides the
    (queries × candidates) distances and logits and the relaxation's k rounds of weights, nothing larger than the
    output is built or kept for backward.
    With autograd on and more than ``lean_above`` pixels (batch × height × width) the block trades compute for
    memory, with the same results: f_E and f_T keep only their input and recompute their activations in stripes
    (:mod:`models.striped`), and the relaxation's rounds are recomputed in the backward pass instead of kept.
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
        lean_above: int = 1 << 19,
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
        self.lean_above = lean_above

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
        (height, width), (top, bottom), (left, right) = y.shape[-2:], *self._padding(y)
        padded = (height + top + bottom, width + left + right)

        def pad(x: torch.Tensor) -> torch.Tensor:
            return F.pad(x, (left, right, top, bottom))

        plan, nets_input, y_pad = self._plan(*padded), _conv_layout(y), pad(y)
        lean = self.lean(y.numel() // y.shape[1])
        e_pad = y_pad if self.embedding is None else pad(_run(self.embedding, nets_input, lean))
        logits = self._logits(_Distances.apply(plan.to_blocks(e_pad), plan), pad, nets_input, lean)
        relax = self.rule == "continuous"
        selection = logits if relax else select_neighbours(logits, self.k, self.rule)
        neighbours = _Aggregate.apply(selection, plan.to_blocks(y_pad), plan, self.k, relax, not lean)
        neighbours = neighbours.div_(self._overlaps(*padded, y)).sub_(y_pad[:, None])
        return torch.cat([y, neighbours[..., top : top + height, left : left + width].flatten(1, 2)], dim=1)

    def lean(self, pixels: int) -> bool:
        """Whether an input of ``pixels`` (batch × height × width) runs in the lean mode now."""
        return torch.is_grad_enabled() and pixels > self.lean_above

    def _padding(self, y: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
        """Zero padding (top, bottom), (left, right); ValueError if the padded input is below :attr:`min_size`."""
        height, width = y.shape[-2:]
        p, s = self.patch_size, self.stride
        rows, cols = _padding(height, p, s), _padding(width, p, s)
        padded = (height + sum(rows), width + sum(cols))
        if min(padded) < self.min_size:
            raise InputTooSmallError(
                f"N3Block needs at least {self.min_size} px per side after padding (a {self.window}×"
                f"{self.window} window of {p} px patches at stride {s}); a {height}×{width} input pads to "
                f"{padded[0]}×{padded[1]}"
            )
        return rows, cols

    def _plan(self, height: int, width: int) -> _Plan:
        p, s = self.patch_size, self.stride
        g = math.gcd(p, s)
        return _Plan((height - p) // s + 1, (width - p) // s + 1, self.window, self.tile, g, p // g, s // g)

    def _logits(
        self, scores: torch.Tensor, pad: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, lean: bool
    ) -> torch.Tensor:
        """``BN(−d) / T`` from the negated distances ``(B, rows, cols, O)``; BN over all of them at once."""
        if self.distance_bn is not None:
            # (1, 1, N) rather than (N, 1): the same statistics, ≈ 15× faster on CPU (docs/performance.md)
            scores = self.distance_bn(scores.reshape(1, 1, -1)).view_as(scores)
        logits = scores / self.temp_bias
        if self.temperature_net is not None:
            log_t = F.avg_pool2d(pad(_run(self.temperature_net, y, lean)), self.patch_size, self.stride)[:, 0]
            return logits * torch.exp(-log_t)[..., None]
        if self.log_temperature is not None:
            return logits * torch.exp(-self.log_temperature)
        return logits

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


def _run(net: nn.Sequential, x: torch.Tensor, lean: bool) -> torch.Tensor:
    """``net(x)``, through :func:`models.striped.striped` when ``lean``."""
    return striped(net, x) if lean else net(x)


def _conv_layout(x: torch.Tensor) -> torch.Tensor:
    """The input of f_E and f_T: channels-last on CPU, where oneDNN ran them ≈ 1.6× faster (docs/performance.md)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
