"""Safe extraction of tar (any compression) and zip archives.

Every member is checked before anything is written: no absolute paths, no ``..``, no links that leave the
target or pass through another archived link, no device files. Extraction happens in a hidden sibling folder
that is renamed to the target at the end, so the target is either complete or absent.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError

_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_DRIVE = re.compile(r"[A-Za-z]:")


class ArchiveError(UserError):
    """An archive that cannot be read or extracted."""


class UnsafeArchiveError(ArchiveError):
    """A member that would write outside the target, through a link, or create a special file."""


@dataclass(frozen=True)
class _Entry:
    """One archive member: its raw and cleaned name, its kind and, for links, the stored target."""

    raw: str
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink" or "special"
    link: str
    info: tarfile.TarInfo | zipfile.ZipInfo


def extract(archive: Path, target: Path, *, members: Callable[[str], bool] | None = None) -> list[Path]:
    """Extract ``archive`` into the new folder ``target``; return the extracted files and links.

    ``members`` selects members by their cleaned relative name (``a/b.png``); all members are checked
    for safety, selected or not. ``target`` must not exist (or be an empty folder).
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"cannot extract {archive}: {target} already exists and is not an empty folder")
    try:
        with _open(archive) as container:
            entries = _entries(container)
            _validate(archive, entries)
            chosen = [entry for entry in entries if entry.name and (members is None or members(entry.name))]
            _stage(container, chosen, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise ArchiveError(f"cannot extract {archive}: {exc}") from None
    names = dict.fromkeys(entry.name for entry in chosen if entry.kind != "dir")
    return [target / name for name in names]


def _open(archive: Path) -> tarfile.TarFile | zipfile.ZipFile:
    if tarfile.is_tarfile(archive):
        return tarfile.open(archive)
    if zipfile.is_zipfile(archive):
        return zipfile.ZipFile(archive)
    raise ArchiveError(f"{archive} is neither a tar nor a zip archive")


def _entries(container: tarfile.TarFile | zipfile.ZipFile) -> list[_Entry]:
    if isinstance(container, tarfile.TarFile):
        return [_tar_entry(info) for info in container.getmembers()]
    return [_zip_entry(info) for info in container.infolist()]


def _tar_entry(info: tarfile.TarInfo) -> _Entry:
    if info.isdir():
        kind = "dir"
    elif info.isfile():
        kind = "file"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    else:
        kind = "special"
    return _Entry(info.name, _clean(info.name), kind, info.linkname, info)


def _zip_entry(info: zipfile.ZipInfo) -> _Entry:
    mode = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        kind = "dir"
    elif mode in (0, stat.S_IFREG):
        kind = "file"
    else:
        kind = "special"  # zipfile would write a symlink as a plain file holding its target: refuse it too
    return _Entry(info.filename, _clean(info.filename), kind, "", info)


def _parts(path: str) -> list[str]:
    """Path components, with either separator, without empty and ``.`` components."""
    return [part for part in re.split(r"[\\/]", path) if part not in ("", ".")]


def _clean(name: str) -> str:
    return "/".join(_parts(name))


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or _DRIVE.match(path) is not None


def _validate(archive: Path, entries: list[_Entry]) -> None:
    """Raise ``UnsafeArchiveError`` for the first unsafe member."""
    links = frozenset(entry.name for entry in entries if entry.kind == "symlink")
    for entry in entries:
        problem = _problem(entry, links)
        if problem:
            raise UnsafeArchiveError(
                f"refusing to extract {archive}: member {entry.raw!r} {problem}; nothing was extracted"
            )


def _problem(entry: _Entry, links: frozenset[str]) -> str | None:
    """Why ``entry`` is unsafe, or None."""
    if _is_absolute(entry.raw):
        return "has an absolute path"
    if ".." in _parts(entry.raw):
        return "has a '..' component"
    if entry.kind == "special":
        return "is a device file, FIFO, socket or link of a kind that is not supported"
    if not entry.name and entry.kind != "dir":
        return "has an empty name"
    parts = _parts(entry.name)
    own = parts[:-1] if entry.kind == "symlink" else parts  # a symlink may replace one of the same name
    for end in range(1, len(own) + 1):
        if "/".join(own[:end]) in links:
            return f"would be written through the archived symlink {'/'.join(own[:end])!r}"
    if entry.kind == "symlink":
        return _link_problem(entry.link, parts[:-1], links, "symlink")
    if entry.kind == "hardlink":
        return _link_problem(entry.link, [], links, "hard link")
    return None


def _link_problem(link: str, start: list[str], links: frozenset[str], kind: str) -> str | None:
    if _is_absolute(link):
        return f"is a {kind} to the absolute path {link!r}"
    problem = _walk(start, link, links)
    return f"is a {kind} to {link!r}, which {problem}" if problem else None


def _walk(start: list[str], path: str, links: frozenset[str]) -> str | None:
    """Follow ``path`` from the folder ``start`` (components below the target); say why that is unsafe."""
    stack = list(start)
    for part in _parts(path):
        if part == "..":
            if not stack:
                return "leads outside the target folder"
            stack.pop()
            continue
        stack.append(part)
        if "/".join(stack) in links:
            return f"passes through the archived symlink {'/'.join(stack)!r}"
    return None


def _stage(container: tarfile.TarFile | zipfile.ZipFile, chosen: list[_Entry], target: Path) -> None:
    """Extract ``chosen`` into a hidden sibling of ``target`` and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as scratch:
        staging = Path(scratch) / "extracted"
        staging.mkdir()
        infos = [entry.info for entry in chosen]
        if isinstance(container, tarfile.TarFile):
            container.extractall(staging, members=infos, **_TAR_FILTER)
        else:
            container.extractall(staging, members=infos)
        os.replace(staging, target)
