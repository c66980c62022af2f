"""Safe archive extraction: normal tar and zip, member filters, and refused hostile members."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.data.archive import ArchiveError, UnsafeArchiveError, extract


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


def _file(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes]:
    return _member(name, size=len(data)), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    return _member(name, kind, target), b""


NORMAL = [
    (_member("./images/", tarfile.DIRTYPE), b""),
    _file("./images/a.png", b"aaa"),
    _file("images/sub/b.png", b"bb"),
    _file("images/notes.txt", b"n"),
    _link("images/alias.png", "a.png"),
]


def test_extracts_a_tar_gz(tmp_path: Path) -> None:
    target = tmp_path / "out"
    paths = extract(_tar(tmp_path / "a.tar.gz", NORMAL), target)
    names = ["images/a.png", "images/sub/b.png", "images/notes.txt", "images/alias.png"]
    assert paths == [target / name for name in names]
    assert (target / "images/sub/b.png").read_bytes() == b"bb"
    assert (target / "images/alias.png").is_symlink() and (target / "images/alias.png").read_bytes() == b"aaa"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "out"]


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_any_tar_compression(tmp_path: Path, mode: str) -> None:
    paths = extract(_tar(tmp_path / "a.tar", [_file("x.bin", b"x")], mode), tmp_path / "out")
    assert [p.read_bytes() for p in paths] == [b"x"]


def test_extracts_a_zip(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"set/": b"", "set/a.png": b"aaa", "set/b/c.png": b"c"})
    paths = extract(archive, tmp_path / "out")
    assert paths == [tmp_path / "out/set/a.png", tmp_path / "out/set/b/c.png"]
    assert paths[1].read_bytes() == b"c"


def test_members_filter_selects_by_clean_name(tmp_path: Path) -> None:
    seen: list[str] = []

    def wanted(name: str) -> bool:
        seen.append(name)
        return name.endswith(".png") and "/sub/" not in name

    target = tmp_path / "out"
    paths = extract(_tar(tmp_path / "a.tar.gz", NORMAL), target, members=wanted)
    assert paths == [target / "images/a.png", target / "images/alias.png"]
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if not p.is_dir()) == [
        "images/a.png",
        "images/alias.png",
    ]
    assert "images/a.png" in seen and "./images/a.png" not in seen


@pytest.mark.parametrize(
    ("members", "offender"),
    [
        ([_file("ok.png"), _file("../evil")], "../evil"),
        ([_file("ok.png"), _file("a/../../evil")], "a/../../evil"),
        ([_file("/abs/evil")], "/abs/evil"),
        ([_link("link", "../../outside")], "link"),
        ([_link("link", "/etc/passwd")], "link"),
        ([_link("s", "."), _link("l", "s/..")], "l"),  # escapes only when `s` is followed
        ([_link("d", "sub"), _file("d/f")], "d/f"),  # would write through a link
        ([_link("h", "../x", tarfile.LNKTYPE)], "h"),
        ([(_member("dev", tarfile.CHRTYPE), b"")], "dev"),
        ([(_member("fifo", tarfile.FIFOTYPE), b"")], "fifo"),
    ],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], offender: str
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("first.png"), *members])
    with pytest.raises(UnsafeArchiveError, match=f"member '{offender}'"):
        extract(archive, tmp_path / "out" / "target")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.tar.gz"]


@pytest.mark.parametrize("offender", ["../evil", "/evil", "a/../../evil", "..\\evil"])
def test_unsafe_zip_members_are_refused(tmp_path: Path, offender: str) -> None:
    archive = _zip(tmp_path / "a.zip", {"ok.png": b"ok", offender: b"bad"})
    with pytest.raises(UnsafeArchiveError, match="nothing was extracted"):
        extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.zip"]


def test_unsafe_member_is_refused_even_when_filtered_out(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("ok.png"), _file("../evil")])
    with pytest.raises(UnsafeArchiveError):
        extract(archive, tmp_path / "out", members=lambda name: name == "ok.png")
    assert not (tmp_path / "out").exists()


def test_refuses_a_target_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_bytes(b"k")
    with pytest.raises(FileExistsError):
        extract(_tar(tmp_path / "a.tar.gz", NORMAL), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep"]


def test_fills_an_empty_target_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert extract(_tar(tmp_path / "a.tar.gz", [_file("x")]), tmp_path / "out") == [tmp_path / "out" / "x"]


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveError, match="neither a tar nor a zip"):
        extract(tmp_path / "a.tar.gz", tmp_path / "out")
