"""DIV2K and Waterloo, the extra training sets of the Poisson-Gaussian models: archive download (loopback server),
mirror, and the offline message of the registration-only set."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.catalog import DATASETS, Archive, Dataset
from pipeline.data.prepare import DatasetError, load_manifest, prepare


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _div2k_zip() -> bytes:
    """A miniature DIV2K_train_HR.zip: two HR PNGs and a file the members glob leaves out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("DIV2K_train_HR/0001.png", _png(1))
        archive.writestr("DIV2K_train_HR/0002.png", _png(2))
        archive.writestr("readme.txt", "not an image")
    return buffer.getvalue()


def _div2k_like(body: bytes, url: str) -> Dataset:
    """The registry's DIV2K entry with the fixture's URL, checksum and size."""
    entry = DATASETS.get("div2k")
    archive = dataclasses.replace(entry.sources[0], url=url, sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    return dataclasses.replace(entry, sources=(archive,))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server for ``tmp_path/www``; yields its base URL."""
    (tmp_path / "www").mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_div2k_entry_is_the_checksummed_official_archive() -> None:
    (archive,) = DATASETS.get("div2k").sources
    assert isinstance(archive, Archive)
    assert archive.url == "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip"
    assert archive.sha256 == "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"
    assert archive.size == 3_530_603_713 and archive.mirror_path == "datasets/div2k/DIV2K_train_HR.zip"
    assert DATASETS.get("div2k").split == "train" and DATASETS.get("div2k").color == "rgb"


def test_div2k_downloads_verifies_and_keeps_only_the_hr_pngs(served: str, tmp_path: Path) -> None:
    body = _div2k_zip()
    (tmp_path / "www" / "DIV2K_train_HR.zip").write_bytes(body)
    manifest = prepare(_div2k_like(body, f"{served}/DIV2K_train_HR.zip"), tmp_path / "div2k", raw=tmp_path / "raw")
    assert manifest[["image", "split", "channels"]].values.tolist() == [["0001", "train", 3], ["0002", "train", 3]]


def test_div2k_comes_from_the_mirror_without_a_request(tmp_path: Path) -> None:
    body = _div2k_zip()
    mirror = tmp_path / "mirror"
    (mirror / "datasets" / "div2k").mkdir(parents=True)
    (mirror / "datasets" / "div2k" / "DIV2K_train_HR.zip").write_bytes(body)
    dataset = _div2k_like(body, "http://127.0.0.1:9/unreachable.zip")
    prepare(dataset, tmp_path / "div2k", raw=tmp_path / "raw", mirror=mirror)
    assert load_manifest(tmp_path / "div2k", "div2k")["image"].tolist() == ["0001", "0002"]


def test_div2k_with_wrong_bytes_is_refused(served: str, tmp_path: Path) -> None:
    body = _div2k_zip()
    (tmp_path / "www" / "DIV2K_train_HR.zip").write_bytes(body[:-1] + b"x")
    with pytest.raises(DatasetError, match="div2k"):
        prepare(_div2k_like(body, f"{served}/DIV2K_train_HR.zip"), tmp_path / "div2k", raw=tmp_path / "raw")
    assert not (tmp_path / "div2k").exists()


def test_waterloo_without_a_mirror_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        prepare(DATASETS.get("waterloo"), tmp_path / "waterloo", raw=tmp_path / "raw", mirror=tmp_path / "empty")
    message = str(caught.value)
    for expected in ("'waterloo'", "exploration_database_and_code.rar", "<mirror>/datasets/waterloo/"):
        assert expected in message


def test_waterloo_reads_the_pristine_images_from_the_mirror(tmp_path: Path) -> None:
    folder = tmp_path / "mirror" / "datasets" / "waterloo" / "pristine_images"
    folder.mkdir(parents=True)
    for index in (1, 2):
        Image.open(io.BytesIO(_png(index))).save(folder / f"{index:05d}.bmp")
    mirror = tmp_path / "mirror"
    manifest = prepare(DATASETS.get("waterloo"), tmp_path / "waterloo", raw=tmp_path / "raw", mirror=mirror)
    assert manifest[["image", "split", "channels"]].values.tolist() == [["00001", "train", 3], ["00002", "train", 3]]
