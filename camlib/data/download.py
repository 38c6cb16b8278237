"""Fetch a public archive safely: resumable download, checksum, extraction that cannot escape.

* :func:`download_url` streams a URL to ``<dest>.part`` with a progress bar and renames it to
  ``dest`` only once the checksum (MD5 or SHA-256) matches. An interrupted transfer leaves the
  ``.part`` file in place (with ``.part.json``: the server's size, ETag, Last-Modified) and the next
  call resumes it with an HTTP ``Range`` request only when the server confirms it is the same file;
  otherwise it starts again. A *completed* transfer whose size or checksum does not match is
  deleted and :class:`ChecksumError` is raised, naming both digests. Every archive camlib knows
  (:data:`KNOWN_FILES`) has its size and checksum; a file with neither is accepted only when the
  server announced its length.
* :func:`extract_archive` unpacks ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` and
  ``.zip``. Every member is checked *before* anything is written: absolute paths, ``..``
  components, links pointing outside the target, device files and zip symlinks make it raise
  :class:`UnsafeArchiveError`; links are resolved against what earlier members create, and the
  member count and total size are bounded. Tar files are then extracted with the standard library's
  ``filter="data"`` (where it exists) as a second line of defence, into a temporary folder moved
  into place when complete (then a marker file is written). A truncated archive raises
  :class:`CorruptArchiveError` naming it.

Introduced in lesson 03 (getting CUB-200-2011 for the paper's section 4.1 experiment).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import lzma
import os
import shutil
import re
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import progress_bar


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected digest."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder (or is a special file)."""


class CorruptArchiveError(ValueError):
    """An archive is truncated or damaged; the message names it."""


class DownloadError(OSError):
    """The transfer failed; a partial ``.part`` file, if any, is kept for resuming."""


_HEX = {"md5": 32, "sha256": 64}

#: Every archive camlib knows how to fetch: url -> (size in bytes, md5). :func:`download_url` fills
#: in the size and the checksum from here when the caller gives none, so no known download is ever
#: accepted unverified.
KNOWN_FILES: dict[str, tuple[int, str]] = {
    "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz":
        (1_150_585_339, "97eceeb196236b17998738112f37df78"),
    "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz":
        (39_272_883, "4d47ba1228eae64f2fa547c47bc65255"),
}

#: Bounds on an archive before anything is extracted (CUB-200-2011 has about 12,000 members, 1.2 GB).
MAX_MEMBERS = 200_000
MAX_EXTRACTED_BYTES = 16 << 30
#: The standard library's own refusal in ``filter="data"`` (Python >= 3.11.4); nothing before.
_TAR_FILTER_ERROR = getattr(tarfile, "FilterError", ())


def _check_digest(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9a-fA-F]{{{_HEX[name]}}}", value):
        raise ValueError(f"{name} must be {_HEX[name]} hexadecimal digits; got {value!r}")
    return value.lower()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest (``"md5"`` or ``"sha256"``) of a file, read in chunks."""
    if algorithm not in _HEX:
        raise ValueError(f"algorithm must be one of {sorted(_HEX)}; got {algorithm!r}")
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _mismatch(path: Path, md5: str | None, sha256: str | None) -> str | None:
    """A sentence describing the first digest that does not match, or None."""
    for name, want in (("md5", md5), ("sha256", sha256)):
        if want is not None:
            got = file_digest(path, name)
            if got != want:
                return f"{name} expected {want}, got {got}"
    return None


def _open(url: str, start: int, timeout: float, validator: str | None = None):
    req = urllib.request.Request(url, headers={"User-Agent": "camlib-course/0.1"})
    if start > 0:
        req.add_header("Range", f"bytes={start}-")
        if validator:   # a server that honours If-Range sends the whole (new) file when it changed
            req.add_header("If-Range", validator)
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only, checked)


def _identity(headers, total: int | None) -> dict[str, Any]:
    """What the server says about *which* file it sends: its total size, ETag and Last-Modified."""
    return {"size": total, "etag": headers.get("ETag") if headers else None,
            "last_modified": headers.get("Last-Modified") if headers else None}


def _same_file(recorded: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """True when every property both the record and the server's answer have agrees, and one does."""
    if not recorded:
        return False
    shared = [k for k in ("size", "etag", "last_modified") if recorded.get(k) is not None and now.get(k) is not None]
    return bool(shared) and all(recorded[k] == now[k] for k in shared)


def _read_info(info: Path) -> dict[str, Any] | None:
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None


def download_url(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
                 size: int | None = None, resume: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 20,
                 progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (a file path), resuming and verifying; returns ``dest``.

    * ``md5``/``sha256``/``size`` (bytes): what the finished file must be. For a file listed in
      :data:`KNOWN_FILES` they default to the recorded values. A file with none of them is accepted
      only when the server announced its length (a transfer that stops early cannot pass unnoticed).
    * ``dest`` already present: returned if it matches (or nothing is known to check); otherwise it is
      deleted and downloaded again.
    * ``<dest>.part`` present and ``resume``: the transfer continues from its size (HTTP ``Range``)
      only when the server confirms it is the same file as the one the part came from -- the total
      size, ``ETag`` and ``Last-Modified`` recorded in ``<dest>.part.json`` when the part was started
      agree with the server's answer (a part with no record is resumed only when a checksum will
      verify the result). Otherwise the part is discarded and the transfer starts again.
    * After the transfer the size and digests are checked; a mismatch deletes the file and raises
      :class:`ChecksumError`. A transfer cut short raises :class:`DownloadError` and keeps the
      ``.part`` file so that calling again resumes.

    Introduced in lesson 03.
    """
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// address; got {url!r}")
    md5, sha256 = _check_digest("md5", md5), _check_digest("sha256", sha256)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"size must be a non-negative int (bytes) or None; got {size!r}")
    known = KNOWN_FILES.get(url.split("?")[0])
    if known is not None:
        size = known[0] if size is None and md5 is None and sha256 is None else size
        md5 = known[1] if md5 is None and sha256 is None else md5
    dest = Path(dest)
    if dest.is_dir():
        raise ValueError(f"dest must be a file path, not a folder; got {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    info = dest.with_name(dest.name + ".part.json")
    verified = md5 is not None or sha256 is not None

    if dest.exists():
        if (size is None or dest.stat().st_size == size) and _mismatch(dest, md5, sha256) is None:
            return dest
        dest.unlink()  # a stale or corrupt copy: fetch it again

    def restart() -> Path:
        part.unlink(missing_ok=True)
        info.unlink(missing_ok=True)
        return download_url(url, dest, md5=md5, sha256=sha256, size=size, resume=False, timeout=timeout,
                            chunk_size=chunk_size, progress=progress)

    if not resume:
        part.unlink(missing_ok=True)
        info.unlink(missing_ok=True)
    start = part.stat().st_size if part.exists() else 0
    record = _read_info(info) if start > 0 else None
    if record is not None and record.get("url") != url:
        record = None
    if start > 0 and record is None and not verified:
        return restart()        # a part of unknown origin and nothing to verify it with: start over
    unconfirmed = start > 0 and record is None      # resumed on the strength of the checksum alone
    validator = (record or {}).get("etag") or (record or {}).get("last_modified")
    try:
        resp = _open(url, start, timeout, validator)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start > 0:
            # Range not satisfiable: the .part already holds the whole file -- or more than it,
            # which "bytes */<total>" reveals; then start again from scratch.
            total = re.fullmatch(r"bytes \*/(\d+)", (e.headers or {}).get("Content-Range", "") or "")
            now = _identity(e.headers, int(total.group(1)) if total else None)
            whole = total is not None and int(total.group(1)) == start
            if not whole or (record is not None and not _same_file(record, now)):
                return restart()
            resp = None
        else:
            raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"downloading {url} failed: {e}. Check the address and the network; "
                            f"a partial file, if any, stays at {part} and the next call resumes it") from e

    total: int | None = None
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            length = resp.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            if status == 206:
                crange = resp.headers.get("Content-Range", "")
                m = re.fullmatch(rf"bytes {start}-\d+/(\d+|\*)", crange.strip())
                if m is None:
                    raise DownloadError(f"server answered range {crange!r} to a request from byte {start}")
                total = int(m.group(1)) if m.group(1) != "*" else None
                now = _identity(resp.headers, total)
                if record is not None and not _same_file(record, now):
                    resp.close()
                    return restart()     # the server's file changed since the part was written
                if size is not None and total is not None and total != size:
                    resp.close()
                    return restart()
                mode = "ab"
            else:  # 200: the server sends everything again
                start, mode, unconfirmed = 0, "wb", False
                total = expected
                now = _identity(resp.headers, total)
                info.write_text(json.dumps({"url": url, **now}))
            chunked = "chunked" in (resp.headers.get("Transfer-Encoding") or "").lower()
            if total is None and size is None and not verified and not chunked:
                raise DownloadError(f"{url}: the server announced no length, and no size or checksum was given, "
                                    "so a transfer that stops early could not be told from a whole one. Pass "
                                    "size= (bytes) or md5=/sha256= to download_url")
            got = 0
            bar = progress_bar(total=(start + expected) if expected is not None else None, initial=start,
                       unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=not progress)
            try:
                with open(part, mode) as f:
                    while True:
                        try:
                            block = resp.read(chunk_size)
                        except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                            raise DownloadError(f"downloading {url} broke off after {start + got} bytes "
                                                f"({e}); the partial file stays at {part} and the next "
                                                "call resumes it") from e
                        if not block:
                            break
                        f.write(block)
                        got += len(block)
                        bar.update(len(block))
            finally:
                bar.close()
            if expected is not None and got < expected:
                raise DownloadError(f"downloading {url} broke off after {start + got} of {start + expected} "
                                    f"bytes; the partial file stays at {part} and the next call resumes it")

    if not part.exists():
        raise DownloadError(f"downloading {url} produced no data")
    have = part.stat().st_size
    if size is not None and total is not None and total != size:
        part.unlink()
        info.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: the server's file has {total} bytes, expected {size}; it was deleted "
                            "(a changed release or a proxy page?)")
    for want, what in ((total, "the server announced"), (size, "expected")):
        if want is not None and have < want:
            raise DownloadError(f"downloading {url} stopped at {have} of {want} bytes ({what}); the partial "
                                f"file stays at {part} and the next call resumes it")
    why = _mismatch(part, md5, sha256)
    if why is None and size is not None and have != size:
        why = f"size expected {size} bytes, got {have}"
    if why is not None:
        if unconfirmed:
            return restart()     # resumed a part of unknown origin and it did not verify: once from scratch
        part.unlink()
        info.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: the downloaded file ({have} bytes) failed verification: {why}. "
                            "It was deleted; the server's file differs from the one expected "
                            "(a changed release or a proxy page?)")
    os.replace(part, dest)
    info.unlink(missing_ok=True)
    return dest


# ----------------------------------------------------------------------------- extraction

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
    Introduced in lesson 03.
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


def download_and_extract(url: str, archive: str | os.PathLike, target: str | os.PathLike, *,
                         md5: str | None = None, sha256: str | None = None, size: int | None = None,
                         progress: bool = True, keep_archive: bool = True) -> Path:
    """:func:`download_url` then :func:`extract_archive`; returns ``target``."""
    path = download_url(url, archive, md5=md5, sha256=sha256, size=size, progress=progress)
    extract_archive(path, target)
    if not keep_archive:
        path.unlink()
    return Path(target)
