"""Unpack an archive safely: every member checked before anything is written, then moved into place.

:func:`extract_archive` unpacks ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` and
``.zip``. Every member is checked *before* anything is written: absolute paths, ``..``
components, links pointing outside the target, device files and zip symlinks make it raise
:class:`UnsafeArchiveError`; links are resolved against what earlier members create, and the
member count and total size are bounded (:data:`MAX_MEMBERS`, :data:`MAX_EXTRACTED_BYTES`). Tar
files are then extracted with the standard library's ``filter="data"`` (where it exists) as a
second line of defence, into a temporary folder moved into place when complete (then
:func:`extraction_marker` is written). A truncated archive raises :class:`CorruptArchiveError`
naming it. Fetching the archive is :mod:`camlib.data.download`'s job.

Introduced in lesson 03 (getting CUB-200-2011 for the paper's section 4.1 experiment).
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder (or is a special file)."""


class CorruptArchiveError(ValueError):
    """An archive is truncated or damaged; the message names it."""


#: Bounds on an archive before anything is extracted (CUB-200-2011 has about 12,000 members, 1.2 GB).
MAX_MEMBERS = 200_000
MAX_EXTRACTED_BYTES = 16 << 30
#: The standard library's own refusal in ``filter="data"`` (Python >= 3.11.4); nothing before.
_TAR_FILTER_ERROR = getattr(tarfile, "FilterError", ())


def _safe_relative(name: str, what: str) -> PurePosixPath:
    """A member name as a relative path with no '..' -- or UnsafeArchiveError."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or p.is_absolute():
        raise UnsafeArchiveError(f"{what} {name!r} has an absolute path; refusing to extract")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"{what} {name!r} contains a '..' component; refusing to extract")
    return p


def _inside(root: Path, candidate: Path) -> bool:
    root = root.resolve()
    try:
        candidate.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _virtual_resolve(parts: list[str], links: dict[str, str], name: str) -> list[str]:
    """Where a path of the archive lands, following the symlinks that earlier members created.

    ``links`` maps the (resolved) path of every symlink extracted so far to its target. Returns the
    resolved components below the target folder, or raises UnsafeArchiveError when the path climbs
    above it, a link is absolute, or links loop."""
    resolved: list[str] = []
    queue = list(parts)
    hops = 0
    while queue:
        p = queue.pop(0)
        if p in ("", "."):
            continue
        if p == "..":
            if not resolved:
                raise UnsafeArchiveError(f"tar member {name!r} resolves (through the links before it) to a "
                                         "place outside the target; refusing to extract")
            resolved.pop()
            continue
        here = "/".join([*resolved, p])
        if here in links:
            hops += 1
            if hops > 40:
                raise UnsafeArchiveError(f"tar member {name!r}: links loop; refusing to extract")
            link = links[here]
            if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
                raise UnsafeArchiveError(f"tar member {name!r} goes through a link to the absolute path {link!r}")
            queue = link.split("/") + queue     # relative to the folder that holds the link
            continue
        resolved.append(p)
    return resolved


def _check_tar(tf: tarfile.TarFile, target: Path, max_members: int, max_bytes: int) -> None:
    links: dict[str, str] = {}     # resolved path of each symlink so far -> its target
    count = total = 0
    for m in tf:
        count += 1
        total += max(int(m.size), 0) if m.isfile() else 0
        if count > max_members:
            raise UnsafeArchiveError(f"the archive has more than {max_members} members; refusing to extract "
                                     "(raise max_members if it is genuine)")
        if total > max_bytes:
            raise UnsafeArchiveError(f"the archive's members add up to more than {max_bytes} bytes; refusing to "
                                     "extract (raise max_bytes if it is genuine)")
        rel = _safe_relative(m.name, "tar member")
        dest = target / rel
        if not _inside(target, dest):
            raise UnsafeArchiveError(f"tar member {m.name!r} would land outside {target}")
        if m.isdev() or m.isfifo():
            raise UnsafeArchiveError(f"tar member {m.name!r} is a device or FIFO; refusing to extract")
        parent = _virtual_resolve(list(rel.parts[:-1]), links, m.name)
        if not rel.parts:
            continue
        if m.issym() or m.islnk():
            link = m.linkname.replace("\\", "/")
            if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
                raise UnsafeArchiveError(f"tar member {m.name!r} links to the absolute path {m.linkname!r}")
            # symlinks resolve from the member's folder, hard links from the archive root
            base = dest.parent if m.issym() else target
            if not _inside(target, base / link):
                raise UnsafeArchiveError(f"tar member {m.name!r} links to {m.linkname!r}, outside {target}")
            start = parent if m.issym() else []
            try:
                _virtual_resolve([*start, *link.split("/")], links, m.name)
            except UnsafeArchiveError:
                raise UnsafeArchiveError(f"tar member {m.name!r} links to {m.linkname!r}, which (through the "
                                         f"links before it) points outside {target}") from None
            if m.issym():
                links["/".join([*parent, rel.parts[-1]])] = link
        else:
            _virtual_resolve([*parent, rel.parts[-1]], links, m.name)   # a file written through a link


def _check_zip(zf: zipfile.ZipFile, target: Path, max_members: int, max_bytes: int) -> None:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise UnsafeArchiveError(f"the archive has {len(infos)} members, more than {max_members}; refusing to extract")
    if sum(i.file_size for i in infos) > max_bytes:
        raise UnsafeArchiveError(f"the archive's members add up to more than {max_bytes} bytes; refusing to extract")
    for info in infos:
        rel = _safe_relative(info.filename, "zip member")
        if not _inside(target, target / rel):
            raise UnsafeArchiveError(f"zip member {info.filename!r} would land outside {target}")
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"zip member {info.filename!r} is a symbolic link; refusing to extract")


def extraction_marker(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """The file :func:`extract_archive` writes into ``target`` once ``archive`` is wholly in place."""
    return Path(target) / f".{Path(archive).name}.extracted"


def _move_into(src: Path, dst: Path) -> None:
    """Move the tree ``src`` onto ``dst``: a whole folder when ``dst`` is free, else file by file
    (files already there are replaced; anything else in ``dst`` is kept)."""
    if not dst.exists() and not dst.is_symlink():
        os.replace(src, dst)
        return
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in src.iterdir():
            _move_into(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    else:
        dst.unlink()
    os.replace(src, dst)


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike, *, max_members: int = MAX_MEMBERS,
                    max_bytes: int = MAX_EXTRACTED_BYTES) -> Path:
    """Unpack a tar (any compression) or zip archive into ``target`` after checking every member.

    Raises :class:`UnsafeArchiveError` (before writing anything) for absolute paths, ``..``
    components, links that resolve outside ``target`` -- followed through the links that earlier
    members create, whatever the Python version's ``tarfile`` does --, device files, zip symlinks,
    more than ``max_members`` members or more than ``max_bytes`` bytes; :class:`CorruptArchiveError`
    (naming the archive) for a truncated or damaged one; ``ValueError`` for a file that is neither a
    tar nor a zip. The members are unpacked into a temporary folder inside ``target`` and moved into
    place only when all are out, then :func:`extraction_marker` is written: an interrupted
    extraction leaves no half folder behind, and the next call starts it again. Returns ``target``.
    Reached from :class:`~camlib.data.cub.CUB200` with ``download=True``, as lesson 04's gpu path
    opens it.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise ValueError(f"archive must be an existing file; got {archive}")
    target.mkdir(parents=True, exist_ok=True)
    marker = extraction_marker(archive, target)
    marker.unlink(missing_ok=True)
    tmp = target / f".{archive.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)              # what an interrupted extraction left: ours, start it again
    damaged = (EOFError, zlib.error, tarfile.ReadError, zipfile.BadZipFile, lzma.LZMAError, gzip.BadGzipFile)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, target, max_members, max_bytes)
                tmp.mkdir()
                zf.extractall(tmp)
                names = zf.namelist()
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                _check_tar(tf, target, max_members, max_bytes)
                tmp.mkdir()
                kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                try:
                    tf.extractall(tmp, **kwargs)
                except _TAR_FILTER_ERROR as e:  # the standard library's own refusal
                    raise UnsafeArchiveError(f"{archive.name}: {e}") from e
                names = tf.getnames()
        else:
            raise ValueError(f"{archive} is neither a tar nor a zip archive")
    except UnsafeArchiveError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except damaged as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorruptArchiveError(f"{archive} is truncated or damaged ({type(e).__name__}: {e}); nothing was "
                                  f"extracted. Delete it and download it again") from e
    for child in sorted(tmp.iterdir()):
        _move_into(child, target / child.name)
    tmp.rmdir()
    marker.write_text(json.dumps({"archive": archive.name, "members": len(names),
                                  "bytes": archive.stat().st_size}))
    return target
