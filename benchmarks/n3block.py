"""Speed and memory of the N³ block against a dense reference and the roofline floor (docs/performance.md).

    python -m benchmarks.n3block [--sizes 128 256 512 1024] [--repeats N] [--json PATH]

Block cases: batch 1, 8 channels, the paper's patch 10 / stride 5 / 15×15 window / k = 7, continuous rule.

- ``n3block`` is :class:`models.n3block.N3Block`; ``dense`` is :func:`dense_block`, the same block written like
  the official design (every distance through one full patch × patch matrix, the candidate patches of the whole
  image gathered at once, no tiling) and run with the very same modules.
- Configurations: ``paper``, the N³Net block (learned f_E and f_T), and ``matching`` (identity embedding, fixed
  T), which is only the distances and the aggregation: exactly what the floor counts.
- Passes: ``fwd`` (eval mode, inference mode) and ``fwd+bwd`` (train mode, ``out.sum().backward()`` into the
  input and every parameter). Above ``N3Block.lean_above`` pixels (1024²) the block's fwd+bwd runs in its lean
  mode (recomputation instead of kept activations); such rows say ``lean: true``.

Network cases (``dncnn``, ``n3net``): inference on a BSD68-size 481×321 image, paper hyper-parameters (the
registered methods' defaults), random weights.

Floor = FLOPs / rate. The rate is the best single-precision GEMM rate of a 4096² ``torch.matmul`` on this
machine with the same thread count, measured before and after the cases. The block's FLOPs, for M patches on the
padded grid, O = window² − 1 candidates, E embedding values and F values of Y per patch, k neighbours:

    forward = M · O · (2·E + 2·k·F)    distances as inner products, then k weighted sums (norms not counted)
    fwd+bwd = 3 · forward              every product also has its two operand gradients

which is M · 224 · 12 800 for the paper's geometry (E = F = 800, k = 7). Rows of the ``paper`` configuration
also carry ``conv_flops`` (f_E and f_T: 2·C_in·C_out·3·3 per pixel and conv, ×3 for fwd+bwd) and
``total_floor_ratio`` against (matching + conv FLOPs) / rate. A network's floor counts all its convs and its
blocks' matching FLOPs.

Every case runs in its own subprocess. Peak memory is the growth of that process's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) during the first call, after the model and input exist; the
times are the best and the median of ``--repeats`` further calls. Dense cases whose estimated memory
(:func:`dense_bytes`) exceeds the budget are skipped and listed as such. Children run with
``OMP_WAIT_POLICY=PASSIVE`` unless the caller sets it: on a shared machine with busy cores OpenMP's default spin
waits made small element-wise ops 50–100× slower (measured), which would swamp the comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import publish
from models.dncnn import DnCNNS
from models.n3block import N3Block, log1mexp
from models.n3net import N3NetMethod

SIZES = (128, 256, 512, 1024)
NETWORK_SIZE = (481, 321)  # BSD68, width × height
CHANNELS = 8
CONFIGS: dict[str, dict[str, Any]] = {"paper": {}, "matching": {"embedding": "identity", "temperature": "fixed"}}
PASSES = ("fwd", "fwd+bwd")
GEMM_SIDE = 4096
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One measurement: ``impl`` (n3block, dense, dncnn, n3net, gemm) of ``config`` on a ``height×width`` input."""

    impl: str
    config: str
    height: int
    width: int
    pass_: str

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


# ---------------------------------------------------------------- the dense reference


def _padding(size: int, patch: int, stride: int) -> tuple[int, int]:
    total = -(size - patch) % stride
    return total // 2, total - total // 2


def candidate_index(rows: int, cols: int, window: int) -> torch.Tensor:
    """``(rows·cols, window² − 1)``: every patch's window (shifted at the borders) without the patch itself."""

    def axis(positions: int) -> torch.Tensor:
        starts = (torch.arange(positions) - window // 2).clamp(0, positions - window)
        return starts[:, None] + torch.arange(window)

    grid = axis(rows)[:, None, :, None] * cols + axis(cols)[None, :, None, :]
    grid = grid.reshape(rows * cols, window * window)
    return grid[grid != torch.arange(rows * cols)[:, None]].view(rows * cols, -1)


def relaxation(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The official continuous rule with plain autograd: k rounds of softmax and ``logits += log(1 − w)``."""
    rounds = []
    for _ in range(k):
        log_weights = torch.log_softmax(logits, dim=-1)
        rounds.append(log_weights.exp())
        logits = logits + log1mexp(log_weights)
    return torch.stack(rounds, dim=-2)


def _log_temperature(block: N3Block, y: torch.Tensor, pad: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """log(T / temp_bias) per patch ``(B, M, 1)`` or as a scalar."""
    if block.temperature_net is not None:
        pooled = F.avg_pool2d(pad(block.temperature_net(y)), block.patch_size, block.stride)
        return pooled.flatten(1)[..., None]
    return block.log_temperature if block.log_temperature is not None else y.new_zeros(())


def dense_block(block: N3Block, y: torch.Tensor) -> torch.Tensor:
    """``block(y)`` computed densely from the block's own modules (the official design, no tiling).

    All patch × patch distances come from one ``(M, M)`` GEMM and are gathered per query; the candidate patches
    of Y are gathered into one ``(M, O, F)`` tensor for the k weighted sums; the patches are folded back with
    ``F.fold`` and averaged.
    """
    (height, width), p, s = y.shape[-2:], block.patch_size, block.stride
    (top, bottom), (left, right) = _padding(height, p, s), _padding(width, p, s)

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (left, right, top, bottom))

    y_pad = pad(y)
    e_pad = y_pad if block.embedding is None else pad(block.embedding(y))
    grid = ((y_pad.shape[-2] - p) // s + 1, (y_pad.shape[-1] - p) // s + 1)
    index = candidate_index(*grid, block.window).to(y.device)
    embedded = F.unfold(e_pad, p, stride=s).transpose(1, 2)
    norms = embedded.square().sum(-1)
    distances = norms[:, :, None] + norms[:, None, :] - 2 * embedded @ embedded.transpose(1, 2)
    scores = -distances.gather(2, index.expand(y.shape[0], -1, -1))
    if block.distance_bn is not None:
        scores = block.distance_bn(scores.reshape(-1, 1)).view_as(scores)
    logits = scores / block.temp_bias * torch.exp(-_log_temperature(block, y, pad))
    weights = relaxation(logits, block.k)
    candidates = F.unfold(y_pad, p, stride=s).transpose(1, 2)[:, index]
    neighbours = (weights @ candidates).permute(0, 2, 3, 1).flatten(1, 2)
    folded = F.fold(neighbours, y_pad.shape[-2:], p, stride=s)
    overlaps = F.fold(y.new_ones(1, p * p, neighbours.shape[-1]), y_pad.shape[-2:], p, stride=s)
    neighbours = (folded / overlaps)[..., top : top + height, left : left + width] - y.repeat(1, block.k, 1, 1)
    return torch.cat([y, neighbours], dim=1)


def dense_bytes(case: Case) -> int:
    """Estimated peak bytes of :func:`dense_block` (paper geometry): (M, M) matrices and the (M, O, F) gather."""
    patches = _patches(case.height, case.width, 10, 5)
    matrices, gathers = (3, 1) if case.pass_ == "fwd" else (4, 2)
    return 4 * (matrices * patches * patches + gathers * patches * 224 * CHANNELS * 100)


# ---------------------------------------------------------------- FLOPs


def _patches(height: int, width: int, patch: int, stride: int) -> int:
    """Patches on the padded grid."""
    return math.prod((n + sum(_padding(n, patch, stride)) - patch) // stride + 1 for n in (height, width))


def matching_flops(block: N3Block, height: int, width: int) -> int:
    """Forward FLOPs of the distances and the k aggregations: ``M · O · (2·E + 2·k·F)``."""
    values = block.patch_size**2
    embedded = values * (block.in_channels if block.embedding is None else block.embedding[-1].out_channels)
    candidates = block.window**2 - 1
    return (
        _patches(height, width, block.patch_size, block.stride)
        * candidates
        * (2 * embedded + 2 * block.k * values * block.in_channels)
    )


def conv_flops(module: nn.Module, height: int, width: int) -> int:
    """Forward FLOPs of every ``Conv2d`` in ``module``, all stride 1 and "same" padded (true in this project)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    per_pixel = sum(2 * m.in_channels // m.groups * m.out_channels * math.prod(m.kernel_size) for m in convs)
    return per_pixel * height * width


# ---------------------------------------------------------------- one case (in a child process)


def _peak_rss() -> int:
    """Peak resident set of this process in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _pass(
    forward: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, x: torch.Tensor, name: str
) -> Callable[[], None]:
    """A call doing one ``fwd`` (eval, inference mode) or ``fwd+bwd`` (train mode, gradients of ``out.sum()``)."""
    if name == "fwd":
        module.eval()

        def infer() -> None:
            with torch.inference_mode():
                forward(x)

        return infer
    module.train()
    x = x.clone().requires_grad_()

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        forward(x).sum().backward()

    return step


def _block_case(case: Case) -> tuple[Callable[[], None], dict[str, int]]:
    block = N3Block(in_channels=CHANNELS, **CONFIGS[case.config])
    y = torch.rand(1, CHANNELS, case.height, case.width)
    forward = block if case.impl == "n3block" else lambda x: dense_block(block, x)
    factor = 1 if case.pass_ == "fwd" else 3
    flops = {
        "flops": factor * matching_flops(block, case.height, case.width),
        "conv_flops": factor * conv_flops(block, case.height, case.width),
    }
    if case.impl == "n3block":
        flops["lean"] = case.pass_ == "fwd+bwd" and block.lean(case.height * case.width)
    return _pass(forward, block, y, case.pass_), flops


def _network_case(case: Case) -> tuple[Callable[[], None], dict[str, int]]:
    network = (DnCNNS() if case.impl == "dncnn" else N3NetMethod()).build_network(25)
    blocks = [m for m in network.modules() if isinstance(m, N3Block)]
    flops = conv_flops(network, case.height, case.width)
    flops += sum(matching_flops(block, case.height, case.width) for block in blocks)
    x = torch.rand(1, 1, case.height, case.width)
    return _pass(network, network, x, case.pass_), {"flops": flops}


def gemm_rate(side: int, repeats: int = 3) -> float:
    """Best FLOP/s of a ``side × side`` single-precision ``torch.matmul``."""
    a, b = torch.rand(side, side), torch.rand(side, side)
    torch.matmul(a, b)
    return 2 * side**3 / min(_seconds(lambda: torch.matmul(a, b)) for _ in range(repeats))


def run_case(case: Case, repeats: int) -> dict[str, Any]:
    """Peak memory of the first call, then best and median time of ``repeats`` calls."""
    torch.manual_seed(0)
    if case.impl == "gemm":
        return {"gemm_flops": gemm_rate(case.height)}
    call, flops = (_block_case if case.impl in ("n3block", "dense") else _network_case)(case)
    before = _peak_rss()
    first = _seconds(call)
    peak = _peak_rss() - before
    times = [_seconds(call) for _ in range(repeats)] or [first]
    result = {"seconds": min(times), "median_seconds": statistics.median(times), "peak_mib": peak / 2**20}
    return result | flops


# ---------------------------------------------------------------- orchestration (parent)


def cases(sizes: Sequence[int], network_size: Sequence[int]) -> list[Case]:
    """Every block case (both implementations, configurations and passes) and the two networks."""
    block = [
        Case(impl, config, size, size, pass_)
        for config in CONFIGS
        for size in sizes
        for pass_ in PASSES
        for impl in ("dense", "n3block")
    ]
    width, height = network_size
    return block + [Case(impl, "paper", height, width, "fwd") for impl in ("dncnn", "n3net")]


def _child(case: Case, repeats: int, threads: int, timeout: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter; an error (timeout, crash, out of memory) becomes ``{"error": …}``."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    command = [sys.executable, "-m", "benchmarks.n3block", "--case", json.dumps(asdict(case))]
    command += ["--repeats", str(repeats), "--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else the physical memory."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, core counts, torch threads and the load average at the start."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        "thp_kernel_mode": _thp_mode(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def _thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode (the bracketed word), or None where there is none."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not path.exists():
        return None
    text = path.read_text()
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else text.strip()


def _row(case: Case, result: dict[str, Any], rate: float) -> dict[str, Any]:
    """The JSON row of one case; floor ratios use ``rate`` (FLOP/s)."""
    row = {"impl": case.impl, "config": case.config, "size": case.size, "height": case.height, "width": case.width}
    row |= {"pass": case.pass_, "seconds": None, "floor_ratio": None, "peak_mib": None} | result
    if row["seconds"] is not None:
        row["floor_seconds"] = row["flops"] / rate
        row["floor_ratio"] = row["seconds"] / row["floor_seconds"]
        if row.get("conv_flops"):
            row["total_floor_ratio"] = row["seconds"] * rate / (row["flops"] + row["conv_flops"])
    return row


def _add_dense_ratios(rows: list[dict[str, Any]]) -> None:
    """``dense_ratio`` of the n3block rows: dense seconds / n3block seconds (the speed-up over the reference)."""
    dense = {(r["config"], r["size"], r["pass"]): r["seconds"] for r in rows if r["impl"] == "dense"}
    for row in rows:
        reference = dense.get((row["config"], row["size"], row["pass"]))
        if row["impl"] == "n3block" and reference is not None and row["seconds"] is not None:
            row["dense_ratio"] = reference / row["seconds"]


def _format(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    head = "| impl | config | size | pass | seconds | × floor | × floor incl. convs | dense ÷ this | peak MiB | note |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        values = [r["impl"], r["config"], r["size"], r["pass"], _format(r["seconds"], 3), _format(r["floor_ratio"])]
        values += [_format(r.get("total_floor_ratio")), _format(r.get("dense_ratio")), _format(r["peak_mib"], 0)]
        values.append(r.get("skipped") or r.get("error") or ("lean mode" if r.get("lean") else ""))
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every case (skipping dense ones over the memory budget) and return the JSON rows."""
    budget = args.dense_budget_gib * 2**30 if args.dense_budget_gib else 0.6 * _available_bytes()
    info = machine_info(args.threads)
    print("machine:", json.dumps(info), flush=True)
    gemm = Case("gemm", "", args.gemm_side, args.gemm_side, "fwd")
    rates = [_child(gemm, 0, args.threads, args.timeout)["gemm_flops"]]
    results = []
    for case in cases(args.sizes, args.network_size):
        if case.impl == "dense" and dense_bytes(case) > budget:
            note = f"skipped: needs ≈ {dense_bytes(case) / 2**30:.1f} GiB > budget {budget / 2**30:.1f} GiB"
            results.append((case, {"skipped": note}))
        else:
            results.append((case, _child(case, args.repeats, args.threads, args.timeout)))
        print(case.impl, case.config, case.size, case.pass_, json.dumps(results[-1][1]), flush=True)
    rates.append(_child(gemm, 0, args.threads, args.timeout)["gemm_flops"])
    info |= {"gemm_gflops": [round(rate / 1e9, 1) for rate in rates], "load_average_end": list(os.getloadavg())}
    print("machine:", json.dumps(info), flush=True)
    rows = [_row(case, result, max(rates)) | {"machine": info} for case, result in results]
    _add_dense_ratios(rows)
    return rows


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.n3block", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="square block input sides (px)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case after the first one")
    parser.add_argument("--network-size", type=int, nargs=2, default=list(NETWORK_SIZE), help="width height")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (all cases)")
    parser.add_argument("--dense-budget-gib", type=float, help="skip dense cases above this (default 60%% of free)")
    parser.add_argument("--gemm-side", type=int, default=GEMM_SIDE, help="side of the GEMM that sets the rate")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(Case(**json.loads(args.case)), args.repeats)))
        return
    rows = measure(args)
    publish(table(rows), rows, args.json)


if __name__ == "__main__":
    main()
