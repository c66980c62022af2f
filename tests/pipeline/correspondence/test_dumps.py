"""CNet's raw dumps: download from a loopback server, checksum, extraction and conversion to labelled pairs.

The fixture is a tiny archive in the original layout: per split ``images.txt``, ``calibration.txt``,
``visibility.txt``, ``calibration/calibration_NNNNNN.h5`` (K with a centre-offset principal point, world→camera
R and T) and ``visibility/vis_NNNNNN.txt``. Its images are renders of one textured plane, so correct SIFT
matches are exact epipolar inliers under the stored poses.
"""

from __future__ import annotations

import hashlib
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from pipeline.correspondence.dumps import DUMPS, Dump, download, prepare_dump, select_pairs
from pipeline.correspondence.geometry import episym
from pipeline.correspondence.tables import read_pairs
from pipeline.data.download import ChecksumError, DownloadError

WIDTH, HEIGHT, FOCAL = 240, 180, 220.0
OFFSET = (3.0, -2.0)  # principal point offset from the image centre, as CNet stores it
TEXTURE = 512  # texture pixels covering the plane square [-2, 2]²


def _look_at(centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = -centre / np.linalg.norm(centre)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    return R, -R @ centre


def _render(texture: np.ndarray, R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """The plane Z = 0 seen by a camera with world→camera (R, T)."""
    K = np.array([[FOCAL, 0, (WIDTH - 1) / 2 + OFFSET[0]], [0, FOCAL, (HEIGHT - 1) / 2 + OFFSET[1]], [0, 0, 1]])
    scale = 4.0 / TEXTURE
    plane_from_texture = np.array([[scale, 0, -2.0], [0, scale, -2.0], [0, 0, 1]])
    H = K @ np.column_stack([R[:, 0], R[:, 1], T]) @ plane_from_texture
    return cv2.warpPerspective(texture, H, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)


def _write_split(folder: Path, centres: list[list[float]], vis: np.ndarray, texture: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "calibration").mkdir()
    (folder / "visibility").mkdir()
    lines: dict[str, list[str]] = {"images": [], "calibration": [], "visibility": []}
    for index, centre in enumerate(centres):
        R, T = _look_at(np.asarray(centre, dtype=float))
        image, calibration, visibility = (f"images/image_{index:06d}.png",
                                          f"calibration/calibration_{index:06d}.h5", f"visibility/vis_{index:06d}.txt")
        cv2.imwrite(str(folder / image), _render(texture, R, T))
        with h5py.File(folder / calibration, "w") as h5:
            h5["K"] = np.array([[FOCAL, 0, OFFSET[0]], [0, FOCAL, OFFSET[1]], [0, 0, 1]])
            h5["R"], h5["T"], h5["imsize"] = R, T.reshape(3, 1), np.array([[WIDTH, HEIGHT]])
        (folder / visibility).write_text(" ".join(str(value) for value in vis[index]) + "\n")
        for key, value in zip(lines, (image, calibration, visibility), strict=True):
            lines[key].append(value)
    for key, values in lines.items():
        (folder / f"{key}.txt").write_text("\n".join(values) + "\n")


def _fixture_archive(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (TEXTURE, TEXTURE, 3)).astype(np.uint8), (0, 0), 2.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    top = tmp / "src" / "fixture_scene"
    full = np.array([[-1, 500, 500], [500, -1, 500], [500, 500, -1]])
    train_vis = full.copy()
    train_vis[0, 1] = 50  # below vis_th = 100: the ordered pair (0, 1) is not selected
    _write_split(top / "train", [[-0.5, 0.1, -4.0], [0.4, 0.0, -4.2], [0.0, -0.4, -3.8]], train_vis, texture)
    _write_split(top / "val", [[0.2, 0.2, -4.0], [-0.3, -0.1, -4.1]], full[:2, :2], texture)
    # two views at the same centre: no translation, skipped and counted
    _write_split(top / "test", [[0.3, 0.0, -4.0], [0.3, 0.0, -4.0], [-0.4, 0.2, -3.9]], full, texture)
    archive = tmp / "served" / "good" / "fixture_scene.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="fixture_scene")
    return archive


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """``(base URL, sha256)`` of the fixture archive on a loopback HTTP server (``/good/…``; ``/dead/`` is 404)."""
    tmp = tmp_path_factory.mktemp("dump")
    archive = _fixture_archive(tmp)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp / "served")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hashlib.sha256(archive.read_bytes()).hexdigest()
    server.shutdown()
    thread.join()


def _dump(base: str, sha256: str | None) -> Dump:
    urls = (f"{base}/dead/fixture_scene.tar.gz", f"{base}/good/fixture_scene.tar.gz")
    return Dump("fixture", "fixture_scene", vis_threshold=100, urls=urls, sha256=sha256)


def test_registry_lists_the_papers_datasets():
    assert set(DUMPS) == {"st_peters", "reichstag", "brown_bm_3_05"}
    assert DUMPS["brown_bm_3_05"].vis_threshold == 0.5 and DUMPS["st_peters"].vis_threshold == 100
    assert all(url.endswith(".tar.gz") and len(dump.urls) == 2 for dump in DUMPS.values() for url in dump.urls)


def test_select_pairs_is_seeded_excludes_self_and_caps():
    vis = np.array([[-1, 5, 200], [300, -1, 0], [101, 150, -1]])
    pairs = select_pairs(vis, threshold=100, cap=10)
    assert sorted(pairs) == [(0, 2), (1, 0), (2, 0), (2, 1)]
    assert pairs == select_pairs(vis, threshold=100, cap=10) and select_pairs(vis, 100, cap=2) == pairs[:2]


def test_download_verifies_falls_back_and_converts(served, tmp_path):
    base, sha256 = served
    counts = prepare_dump(_dump(base, sha256), tmp_path / "out", raw=tmp_path / "raw", caps={"train": 4})
    assert counts == {"test_no_translation": 2, "test_pairs": 4, "train_pairs": 4, "val_pairs": 2}
    train = read_pairs(tmp_path / "out" / "train")
    selectable = {f"fixture/train/{i:06d}-{j:06d}" for i, j in [(0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]}
    assert len(train) == 4 and {pair.pair_id for pair in train} < selectable  # (0, 1) is below vis_th
    for pair in train + read_pairs(tmp_path / "out" / "test"):
        assert len(pair) > 100 and pair.size1 == (WIDTH, HEIGHT)
        np.testing.assert_allclose(pair.K1[:2, 2], [(WIDTH - 1) / 2 + OFFSET[0], (HEIGHT - 1) / 2 + OFFSET[1]])
        np.testing.assert_array_equal(pair.label == 1, episym(pair.xs, pair.E) < 1e-4)
        assert (pair.label == 1).mean() > 0.3  # the stored poses explain the SIFT matches
        assert np.isfinite(pair.ratio).all() and pair.images[0].startswith("images/")


def test_a_wrong_checksum_is_refused(served, tmp_path):
    base, _ = served
    with pytest.raises(ChecksumError, match="does not match"):
        download(_dump(base, "0" * 64), tmp_path / "raw")
    assert not (tmp_path / "raw" / "fixture_scene.tar.gz").exists()


def test_without_a_checksum_nothing_is_downloaded_but_a_local_copy_is_pinned(served, tmp_path):
    base, sha256 = served
    dump = _dump(base, None)
    with pytest.raises(DownloadError, match="no SHA-256 is published"):
        download(dump, tmp_path / "raw")
    download(_dump(base, sha256), tmp_path / "first")  # a copy obtained some other way
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / dump.archive).write_bytes((tmp_path / "first" / dump.archive).read_bytes())
    offline = Dump("fixture", "fixture_scene", 100, urls=("http://127.0.0.1:9/nothing.tar.gz",))
    assert download(offline, raw).name == "fixture_scene"
    assert (raw / f"{dump.archive}.sha256").read_text().split()[0] == sha256
