"""Downloads from a loopback HTTP server with scripted faults: resume, retries, checksums, mirror, offline."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.data import download
from pipeline.data.download import (
    ChecksumError,
    DownloadError,
    MirrorError,
    RemoteFile,
    fetch,
    mirror_root,
    sha256_file,
)

BODY = bytes(range(256)) * 64  # 16 KiB


@dataclass
class Resource:
    """A served file; ``faults`` are used up one per request: an HTTP status to answer or ``"truncate"``."""

    body: bytes
    faults: list[int | str] = field(default_factory=list)
    ranges: bool = True


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.resources: dict[str, Resource] = {}
        self.ranges_asked: list[str | None] = []  # the Range header of every request, in order

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.ranges_asked.append(self.headers.get("Range"))
        resource = self.server.resources.get(self.path)
        if resource is None:
            self.send_error(404)
            return
        fault = resource.faults.pop(0) if resource.faults else None
        if isinstance(fault, int):
            self.send_error(fault)
            return
        start = self._range_start() if resource.ranges else None
        size = len(resource.body)
        if start is not None and start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = resource.body[start or 0 :]
        self.send_response(200 if start is None else 206)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if fault == "truncate" else payload)
        self.close_connection = True

    def _range_start(self) -> int | None:
        value = self.headers.get("Range", "")
        return int(value[len("bytes=") : -1]) if value.startswith("bytes=") and value.endswith("-") else None

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve(server: _Server, *, faults: tuple[int | str, ...] = (), ranges: bool = True) -> RemoteFile:
    server.resources["/f.bin"] = Resource(BODY, list(faults), ranges)
    digest = hashlib.sha256(BODY).hexdigest()
    return RemoteFile(server.url("/f.bin"), digest, len(BODY), "datasets/toy/f.bin")


def _fetch(remote: RemoteFile, dest: Path, **options: object) -> Path:
    return fetch(remote, dest, dataset="toy", retries=2, backoff=0.001, timeout=5, progress=False, **options)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff delays fetch asked for (not actually slept)."""
    delays: list[float] = []
    monkeypatch.setattr(download.time, "sleep", delays.append)
    return delays


def test_downloads_and_verifies(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "f.bin"
    assert _fetch(_serve(server), dest) == dest
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]
    assert server.ranges_asked == [None]


def test_resumes_a_truncated_transfer(server: _Server, tmp_path: Path, sleeps: list[float]) -> None:
    dest = tmp_path / "f.bin"
    _fetch(_serve(server, faults=("truncate",)), dest)
    assert dest.read_bytes() == BODY
    assert server.ranges_asked == [None, f"bytes={len(BODY) // 2}-"]
    assert len(sleeps) == 1


def test_restarts_from_zero_when_the_server_ignores_range(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes that must not stay")
    _fetch(_serve(server, ranges=False), dest)
    assert dest.read_bytes() == BODY
    assert server.ranges_asked == ["bytes=30-"]


def test_complete_part_and_416_finish_without_a_body(server: _Server, tmp_path: Path) -> None:
    remote = _serve(server)
    remote = RemoteFile(remote.url, remote.sha256)  # size unknown: only the server can say it is complete
    (tmp_path / "f.bin.part").write_bytes(BODY)
    _fetch(remote, tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert server.ranges_asked == [f"bytes={len(BODY)}-"]


def test_416_for_an_overlong_part_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    remote = _serve(server)
    (tmp_path / "f.bin.part").write_bytes(BODY + b"junk")
    _fetch(RemoteFile(remote.url, remote.sha256), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert server.ranges_asked == [f"bytes={len(BODY) + 4}-", None]


def test_checksum_mismatch_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    remote = _serve(server)
    wrong = RemoteFile(remote.url, "0" * 64, remote.size)
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError) as caught:
        _fetch(wrong, dest)
    message = str(caught.value)
    for expected in ("'toy'", remote.url, "0" * 64, remote.sha256, str(dest)):
        assert expected in message
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_is_detected(server: _Server, tmp_path: Path) -> None:
    remote = _serve(server)
    with pytest.raises(ChecksumError, match=rf"expected size: +{len(BODY) - 1} bytes"):
        _fetch(RemoteFile(remote.url, remote.sha256, len(BODY) - 1), tmp_path / "f.bin")
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once(server: _Server, tmp_path: Path, sleeps: list[float]) -> None:
    remote = RemoteFile(server.url("/missing.bin"), "0" * 64, mirror_path="datasets/toy/missing.bin")
    started = time.monotonic()
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        fetch(remote, tmp_path / "f.bin", dataset="toy", backoff=60, progress=False)
    assert time.monotonic() - started < 2
    assert (server.ranges_asked, sleeps) == ([None], [])
    assert "gave up" not in str(caught.value)


def test_5xx_is_retried_with_backoff(server: _Server, tmp_path: Path, sleeps: list[float]) -> None:
    _fetch(_serve(server, faults=(503, 500)), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert len(server.ranges_asked) == 3
    assert sleeps == [0.001, 0.002]


def test_gives_up_after_the_retries(server: _Server, tmp_path: Path, sleeps: list[float]) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 503 .*gave up after 3 attempts"):
        _fetch(_serve(server, faults=(503,) * 5), tmp_path / "f.bin")
    assert len(server.ranges_asked) == 3
    assert list(tmp_path.iterdir()) == []


def test_offline_error_names_the_remedies(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was just free is closed: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/set12/01.png"
    remote = RemoteFile(url, "a" * 64, mirror_path="datasets/set12/01.png")
    dest = tmp_path / "raw" / "01.png"
    with pytest.raises(DownloadError) as caught:
        fetch(remote, dest, dataset="set12", retries=1, backoff=0.001, progress=False)
    message = str(caught.value)
    for expected in ("'set12'", remote.url, "N3BENCH_MIRROR", "datasets/set12/01.png", str(dest), "a" * 64):
        assert expected in message
    assert not dest.exists()


def test_mirror_hit_makes_no_request(server: _Server, tmp_path: Path) -> None:
    remote = _serve(server)
    (tmp_path / "mirror" / "datasets" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / remote.mirror_path).write_bytes(BODY)
    dest = tmp_path / "f.bin"
    _fetch(remote, dest, mirror=tmp_path / "mirror")
    assert dest.read_bytes() == BODY
    assert server.ranges_asked == []


def test_mirror_file_with_wrong_bytes_is_refused(server: _Server, tmp_path: Path) -> None:
    remote = _serve(server)
    (tmp_path / "mirror" / "datasets" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / remote.mirror_path).write_bytes(BODY[:-1] + b"x")
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match="mirror file"):
        _fetch(remote, dest, mirror=tmp_path / "mirror")
    assert not dest.exists() and not (tmp_path / "f.bin.part").exists()
    assert server.ranges_asked == []


def test_second_call_makes_no_request(server: _Server, tmp_path: Path) -> None:
    remote, dest = _serve(server), tmp_path / "f.bin"
    _fetch(remote, dest)
    _fetch(remote, dest)
    assert server.ranges_asked == [None]


def test_existing_file_with_other_bytes_is_left_alone(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"placed by hand")
    with pytest.raises(ChecksumError, match="delete it"):
        _fetch(_serve(server), dest)
    assert dest.read_bytes() == b"placed by hand"
    assert server.ranges_asked == []


def test_progress_bar_when_asked(server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch(_serve(server), tmp_path / "f.bin", dataset="toy", progress=True)
    assert "f.bin" in capsys.readouterr().err


def test_sha256_file_streams(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(BODY * 100)
    assert sha256_file(path) == hashlib.sha256(BODY * 100).hexdigest()


def test_remote_file_rejects_a_malformed_sha256() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        RemoteFile("http://example.invalid/x", "ABC")


def test_mirror_root_prefers_the_explicit_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "explicit").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("N3BENCH_MIRROR", "env")
    assert mirror_root("explicit") == (tmp_path / "explicit").resolve()
    assert mirror_root() == (tmp_path / "env").resolve()
    monkeypatch.delenv("N3BENCH_MIRROR")
    assert mirror_root() is None


def test_mirror_root_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N3BENCH_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(MirrorError, match=r"N3BENCH_MIRROR .*nowhere"):
        mirror_root()
    with pytest.raises(MirrorError, match=r"`mirror` params key .*elsewhere"):
        mirror_root(tmp_path / "elsewhere")


def test_a_served_archive_that_escapes_its_folder_is_refused(server: _Server, tmp_path: Path) -> None:
    import io
    import tarfile

    from pipeline.data.archive import UnsafeArchiveError, extract

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("images/ok.png", b"fine"), ("../../evil.sh", b"rm -rf ~")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buffer.getvalue()
    server.resources["/evil.tar.gz"] = Resource(body, [], True)
    remote = RemoteFile(server.url("/evil.tar.gz"), hashlib.sha256(body).hexdigest(), len(body))
    archive = _fetch(remote, tmp_path / "evil.tar.gz")
    with pytest.raises(UnsafeArchiveError, match=r"evil\.sh"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path.parent / "evil.sh").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))
