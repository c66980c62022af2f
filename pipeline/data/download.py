"""Verified downloads: from a local mirror or over HTTP(S) with resume and retries, checked before use.

A file only ever appears under its final name after its size and SHA-256 matched; partial downloads live
next to it as ``<name>.part`` and are resumed with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import UserError

MIRROR_ENV = "N3BENCH_MIRROR"
_CHUNK = 1 << 16
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+)")
_RETRY_STATUS = frozenset({408, 425, 429})  # besides every 5xx


class DownloadError(UserError):
    """A file could not be obtained; the message says why and what the user can do about it."""


class ChecksumError(DownloadError):
    """Bytes whose SHA-256 or size differ from the expected ones."""


class MirrorError(DownloadError):
    """A mirror folder was named but does not exist."""


class _Failure(Exception):
    """One failed attempt; ``retry`` tells whether trying again may help."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its URL, SHA-256 (lowercase hex), size if known, and path inside a mirror."""

    url: str
    sha256: str
    size: int | None = None
    mirror_path: str | None = None

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 of {self.url} must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"size of {self.url} must not be negative, got {self.size}")


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_root(explicit: str | Path | None = None) -> Path | None:
    """The mirror folder: ``explicit`` (the ``mirror`` params key) if given, else ``$N3BENCH_MIRROR``.

    Relative paths resolve against the current directory; None when neither is set.
    """
    if explicit is not None and str(explicit):
        value, origin = str(explicit), "the `mirror` params key"
    else:
        value, origin = os.environ.get(MIRROR_ENV, ""), MIRROR_ENV
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise MirrorError(f"{origin} names the mirror folder {value!r}, but {path} is not an existing folder")
    return path


def fetch(
    remote: RemoteFile,
    dest: Path,
    *,
    dataset: str,
    mirror: Path | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> Path:
    """Make ``dest`` hold exactly the verified bytes of ``remote`` and return it.

    A correct ``dest`` is kept as is; otherwise the file is copied from ``mirror`` when it has it, else
    downloaded (resumed from ``dest.part``, retried ``retries`` times with exponential ``backoff``). A
    ``dest`` that exists with other bytes is never overwritten: that raises ``ChecksumError``.
    """
    dest = Path(dest)
    if dest.exists():
        _check_existing(dest, remote, dataset)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    source = _mirror_file(remote, mirror)
    if source is not None:
        shutil.copyfile(source, part)
        return _install(part, dest, remote, dataset, origin=f"the mirror file {source}")
    show = sys.stderr.isatty() if progress is None else progress
    try:
        _download(remote, part, retries=retries, backoff=backoff, timeout=timeout, show=show, label=dest.name)
    except _Failure as exc:
        raise DownloadError(_unavailable(remote, dest, dataset, mirror, str(exc))) from None
    return _install(part, dest, remote, dataset, origin=remote.url)


def _check_existing(dest: Path, remote: RemoteFile, dataset: str) -> None:
    """Accept a file already at ``dest`` only if it is the expected one."""
    problem = _mismatch(dest, remote)
    if problem:
        raise ChecksumError(
            f"dataset {dataset!r}: {dest} already exists but is not the expected file {remote.url}\n"
            f"{problem}\nIt was left untouched; delete it to download the file again."
        )


def _mirror_file(remote: RemoteFile, mirror: Path | None) -> Path | None:
    if mirror is None or remote.mirror_path is None:
        return None
    path = Path(mirror) / remote.mirror_path
    return path if path.is_file() else None


def _mismatch(path: Path, remote: RemoteFile) -> str:
    """Lines saying how the file at ``path`` differs from ``remote`` (empty when it matches)."""
    size, digest = path.stat().st_size, sha256_file(path)
    lines = []
    if remote.size is not None and size != remote.size:
        lines += [f"  expected size:   {remote.size} bytes", f"  actual size:     {size} bytes"]
    if digest != remote.sha256:
        lines += [f"  expected sha256: {remote.sha256}", f"  actual sha256:   {digest}"]
    return "\n".join(lines)


def _install(part: Path, dest: Path, remote: RemoteFile, dataset: str, *, origin: str) -> Path:
    """Rename ``part`` to ``dest`` if it holds the expected bytes; otherwise delete it and raise."""
    problem = _mismatch(part, remote)
    if problem:
        part.unlink()
        raise ChecksumError(
            f"dataset {dataset!r}: the file from {origin} does not match its checksum\n"
            f"{problem}\nIt was discarded; nothing was written to {dest}."
        )
    os.replace(part, dest)
    return dest


def _unavailable(remote: RemoteFile, dest: Path, dataset: str, mirror: Path | None, reason: str) -> str:
    """The message for a file that could not be downloaded, with the ways to provide it by hand."""
    lines = [f"could not download a file of dataset {dataset!r}", f"  URL:    {remote.url}"]
    lines.append(f"  reason: {reason}")
    by_hand = f"place the file by hand at {dest.absolute()}\n      (its sha256 must be {remote.sha256})"
    if remote.mirror_path is None:
        lines.append(f"Without network access, {by_hand}.")
        return "\n".join(lines)
    if mirror is not None:
        lines.append(f"  (the mirror {mirror} has no {remote.mirror_path})")
    lines += [
        "Without network access, either",
        f"  (a) set {MIRROR_ENV} (or the `mirror` params key) to a folder holding {remote.mirror_path}, or",
        f"  (b) {by_hand}.",
    ]
    return "\n".join(lines)


def _download(
    remote: RemoteFile, part: Path, *, retries: int, backoff: float, timeout: float, show: bool, label: str
) -> None:
    """Transfer attempts with exponential backoff between them, as long as a retry may help."""
    attempt = 0
    while True:
        try:
            return _transfer(remote, part, timeout=timeout, show=show, label=label)
        except _Failure as exc:
            if not exc.retry:
                raise
            if attempt >= retries:
                plural = "s" if attempt else ""
                raise _Failure(f"{exc} (gave up after {attempt + 1} attempt{plural})", retry=False) from None
        time.sleep(backoff * 2**attempt)
        attempt += 1


def _transfer(remote: RemoteFile, part: Path, *, timeout: float, show: bool, label: str) -> None:
    """One attempt: continue ``part`` from where it stops (or start it) until the body ends."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset >= remote.size:
        if offset == remote.size:
            return
        part.unlink()
        offset = 0
    headers = {"User-Agent": "n3bench", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(remote.url, headers=headers)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            if _content_range(exc.headers.get("Content-Range"))[1] == offset:
                return  # the part already holds the whole file
            part.unlink()
            return _transfer(remote, part, timeout=timeout, show=show, label=label)
        retry = exc.code >= 500 or exc.code in _RETRY_STATUS
        raise _Failure(f"HTTP {exc.code} {exc.reason}", retry=retry) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Failure(_describe(exc), retry=True) from None
    with response:
        _receive(response, part, offset, remote.size, show=show, label=label)


def _receive(
    response: http.client.HTTPResponse, part: Path, offset: int, size: int | None, *, show: bool, label: str
) -> None:
    """Write the body to ``part``: appended after a matching 206, from zero after a 200."""
    start = 0
    if response.status == 206:
        if _content_range(response.headers.get("Content-Range"))[0] != offset:
            part.unlink(missing_ok=True)
            raise _Failure("the server answered another byte range than the one asked for", retry=True)
        start = offset
    length_header = response.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    total = size if size is not None else (start + length if length is not None else None)
    received = 0
    with (
        open(part, "ab" if start else "wb") as out,
        tqdm(total=total, initial=start, desc=label, unit="B", unit_scale=True, disable=not show) as bar,
    ):
        for chunk in _chunks(response):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if length is not None and received < length:
        raise _Failure(f"connection closed after {start + received} of {start + length} bytes", retry=True)


def _chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The body in chunks; network trouble while reading becomes a retryable failure."""
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Failure(_describe(exc), retry=True) from None
        if not chunk:
            return
        yield chunk


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header; None for what it does not say."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None, None
    first = match.group(1)
    return (int(first) if first is not None else None), int(match.group(2))


def _describe(exc: BaseException) -> str:
    """A short human reason for a network error."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return "the server did not answer in time"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
