"""Speed of the evaluation pipeline's heavy methods (docs/performance.md).

    python -m benchmarks.pipeline [--images N] [--workers N] [--json PATH]

- ``bm3d``: BM3D (σ = 25) on N gray BSD68-size images, once in one process (``workers = 1``) and once through
  the method's process pool (``workers``, default every core). Row ``bm3d-speedup`` is one time ÷ the other.
- ``dncnn-s`` / ``n3net``: the registered methods' ``restore`` (what evaluation calls) on the same images with the
  paper architectures and σ = 25. The weights are random: the official ones have the same shapes, so the same
  time. Row ``n3net/dncnn`` is the ratio of the two.

Images: BSD68 from ``$N3BENCH_MIRROR/datasets/bsd68`` when the mirror is set, else crops of scikit-image's
``camera``, 321×481 like BSD68. Each time is the best of ``--repeats`` runs over all images.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import publish
from pipeline.data.images import read_image, to_float
from pipeline.methods import METHODS, LearnedMethod, Method

SIGMA = 25
BSD68_SHAPE = (321, 481)


def test_images(count: int, shape: tuple[int, int] = BSD68_SHAPE) -> tuple[str, list[np.ndarray]]:
    """``count`` gray float32 images in [0, 1]: BSD68 through the mirror if set (and ``shape`` is its size), else
    ``shape`` crops of ``camera``."""
    mirror = os.environ.get("N3BENCH_MIRROR")
    files = sorted((Path(mirror) / "datasets" / "bsd68").glob("*.png"))[:count] if mirror else []
    if len(files) == count and shape == BSD68_SHAPE:
        return "bsd68", [to_float(read_image(path)) for path in files]
    from skimage import data

    camera, (height, width) = to_float(data.camera()), shape  # camera is 512×512
    tops, lefts = (40 * (i % 4) for i in range(count)), (10 * (i % 3) for i in range(count))
    crops = [camera[top : top + height, left : left + width].copy() for top, left in zip(tops, lefts, strict=True)]
    return "camera crops", crops


def noisy(images: Sequence[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(image + rng.standard_normal(image.shape) * SIGMA / 255).astype(np.float32) for image in images]


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def network(name: str) -> Method:
    """A registered learned method with its default (paper) architecture and random weights."""
    import models  # noqa: F401  (registers the methods)

    method = METHODS.get(name)()
    assert isinstance(method, LearnedMethod)
    torch.manual_seed(0)
    method.load(method.build_network(SIGMA).state_dict(), SIGMA)
    return method


def measure(count: int, workers: int, repeats: int, shape: tuple[int, int]) -> list[dict[str, Any]]:
    """The rows: seconds per method and setting, and the two ratios."""
    import models  # noqa: F401

    source, images = test_images(count, shape)
    inputs = noisy(images)
    bm3d = {n: METHODS.get("bm3d")(workers=n) for n in (1, workers)}
    rows = [{"case": f"bm3d workers={n}", "seconds": best_seconds(lambda m=m: m.restore_batch(inputs, SIGMA), 1)}
            for n, m in bm3d.items()]
    for name in ("dncnn-s", "n3net"):
        method = network(name)
        seconds = best_seconds(lambda m=method: [m.restore(image, SIGMA) for image in inputs], repeats)
        rows.append({"case": name, "seconds": seconds})
    by_case = {row["case"]: row["seconds"] for row in rows}
    rows.append({"case": "bm3d-speedup", "ratio": by_case["bm3d workers=1"] / by_case[f"bm3d workers={workers}"]})
    rows.append({"case": "n3net/dncnn", "ratio": by_case["n3net"] / by_case["dncnn-s"]})
    info = {"images": f"{count} × {source}", "workers": workers, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": [round(v, 2) for v in os.getloadavg()]}
    return [row | {"machine": info} for row in rows]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | seconds | ratio |", "|---|---|---|"]
    for row in rows:
        seconds, ratio = row.get("seconds"), row.get("ratio")
        lines.append(f"| {row['case']} | {f'{seconds:.2f}' if seconds else ''} | {f'{ratio:.2f}' if ratio else ''} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="test images (BSD68 size)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="BM3D processes to compare with 1")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each network; the best counts")
    parser.add_argument("--shape", type=int, nargs=2, default=list(BSD68_SHAPE), help="height width (≤ 512)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = measure(args.images, args.workers, args.repeats, tuple(args.shape))
    print("machine:", json.dumps(rows[0]["machine"]))
    publish(table(rows), rows, args.json)


if __name__ == "__main__":
    main()
