"""Fetch a public archive safely: resumable download, checksum, extraction that cannot escape.

* :func:`download_url` streams a URL to ``<dest>.part`` with a progress bar and renames it to
  ``dest`` only once the checksum (MD5 or SHA-256) matches. An interrupted transfer leaves the
  ``.part`` file in place and the next call resumes it with an HTTP ``Range`` request (a server
  that ignores ranges sends the whole file again). A *completed* transfer whose checksum does not
  match is deleted -- resuming a wrong file cannot repair it -- and :class:`ChecksumError` is
  raised, naming both digests.
* :func:`extract_archive` unpacks ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` and
  ``.zip``. Every member is checked *before* anything is written: absolute paths, ``..``
  components, links pointing outside the target, device files and zip symlinks make it raise
  :class:`UnsafeArchiveError`. Tar files are then extracted with the standard library's
  ``filter="data"`` as a second line of defence.

Introduced in lesson 03 (getting CUB-200-2011 for the paper's section 4.1 experiment).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected digest."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder (or is a special file)."""


class DownloadError(OSError):
    """The transfer failed; a partial ``.part`` file, if any, is kept for resuming."""


_HEX = {"md5": 32, "sha256": 64}
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


def verify_file(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> bool:
    """True when ``path`` matches every digest given (and True when none is given)."""
    md5, sha256 = _check_digest("md5", md5), _check_digest("sha256", sha256)
    if md5 is not None and file_digest(path, "md5") != md5:
        return False
    if sha256 is not None and file_digest(path, "sha256") != sha256:
        return False
    return True


def _mismatch(path: Path, md5: str | None, sha256: str | None) -> str | None:
    """A sentence describing the first digest that does not match, or None."""
    for name, want in (("md5", md5), ("sha256", sha256)):
        if want is not None:
            got = file_digest(path, name)
            if got != want:
                return f"{name} expected {want}, got {got}"
    return None


def _open(url: str, start: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "camlib-course/0.1"})
    if start > 0:
        req.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only, checked)


def download_url(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
                 resume: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 20,
                 progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (a file path), resuming and verifying; returns ``dest``.

    * ``dest`` already present: returned if it matches the digests (or none is given); if it does
      not match it is deleted and downloaded again.
    * ``<dest>.part`` present and ``resume``: the transfer continues from its size (HTTP
      ``Range``); a 200 answer restarts it; a 416 answer means the part is already whole (or,
      when the server's total says it is longer than the file, restarts it).
    * After the transfer the digests are checked; a mismatch deletes the file and raises
      :class:`ChecksumError`. A transfer cut short raises :class:`DownloadError` and keeps the
      ``.part`` file so that calling again resumes.

    Introduced in lesson 03.
    """
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// address; got {url!r}")
    md5, sha256 = _check_digest("md5", md5), _check_digest("sha256", sha256)
    dest = Path(dest)
    if dest.is_dir():
        raise ValueError(f"dest must be a file path, not a folder; got {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    if dest.exists():
        if _mismatch(dest, md5, sha256) is None:
            return dest
        dest.unlink()  # a stale or corrupt copy: fetch it again

    start = part.stat().st_size if (resume and part.exists()) else 0
    if not resume and part.exists():
        part.unlink()
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start > 0:
            # Range not satisfiable: the .part already holds the whole file -- or more than it,
            # which "bytes */<total>" reveals; then start again from scratch.
            total = re.fullmatch(r"bytes \*/(\d+)", (e.headers or {}).get("Content-Range", "") or "")
            if total is not None and int(total.group(1)) != start:
                part.unlink()
                return download_url(url, dest, md5=md5, sha256=sha256, resume=False, timeout=timeout,
                                    chunk_size=chunk_size, progress=progress)
            resp = None
        else:
            raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"downloading {url} failed: {e}. Check the address and the network; "
                            f"a partial file, if any, stays at {part} and the next call resumes it") from e

    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            if status == 206:
                crange = resp.headers.get("Content-Range", "")
                if not crange.startswith(f"bytes {start}-"):
                    raise DownloadError(f"server answered range {crange!r} to a request from byte {start}")
                mode = "ab"
            else:  # 200: the server sends everything again
                start, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            got = 0
            bar = tqdm(total=(start + expected) if expected is not None else None, initial=start,
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
    why = _mismatch(part, md5, sha256)
    if why is not None:
        size = part.stat().st_size
        part.unlink()
        raise ChecksumError(f"{url}: the downloaded file ({size} bytes) failed verification: {why}. "
                            "It was deleted; the server's file differs from the one expected "
                            "(a changed release or a proxy page?)")
    os.replace(part, dest)
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


def _check_tar(tf: tarfile.TarFile, target: Path) -> None:
    for m in tf.getmembers():
        rel = _safe_relative(m.name, "tar member")
        dest = target / rel
        if not _inside(target, dest):
            raise UnsafeArchiveError(f"tar member {m.name!r} would land outside {target}")
        if m.isdev() or m.isfifo():
            raise UnsafeArchiveError(f"tar member {m.name!r} is a device or FIFO; refusing to extract")
        if m.issym() or m.islnk():
            link = m.linkname.replace("\\", "/")
            if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
                raise UnsafeArchiveError(f"tar member {m.name!r} links to the absolute path {m.linkname!r}")
            # symlinks resolve from the member's folder, hard links from the archive root
            base = dest.parent if m.issym() else target
            if not _inside(target, base / link):
                raise UnsafeArchiveError(f"tar member {m.name!r} links to {m.linkname!r}, outside {target}")


def _check_zip(zf: zipfile.ZipFile, target: Path) -> None:
    for info in zf.infolist():
        rel = _safe_relative(info.filename, "zip member")
        if not _inside(target, target / rel):
            raise UnsafeArchiveError(f"zip member {info.filename!r} would land outside {target}")
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"zip member {info.filename!r} is a symbolic link; refusing to extract")


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Unpack a tar (any compression) or zip archive into ``target`` after checking every member.

    Raises :class:`UnsafeArchiveError` (before writing anything) for absolute paths, ``..``
    components, links that resolve outside ``target``, device files and zip symlinks; raises
    ``ValueError`` for a file that is neither a tar nor a zip. Returns ``target``.
    Introduced in lesson 03.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise ValueError(f"archive must be an existing file; got {archive}")
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_zip(zf, target)
            zf.extractall(target)
        return target
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            _check_tar(tf, target)
            kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            try:
                tf.extractall(target, **kwargs)
            except _TAR_FILTER_ERROR as e:  # the standard library's own refusal
                raise UnsafeArchiveError(f"{archive.name}: {e}") from e
        return target
    raise ValueError(f"{archive} is neither a tar nor a zip archive")


def download_and_extract(url: str, archive: str | os.PathLike, target: str | os.PathLike, *,
                         md5: str | None = None, sha256: str | None = None, progress: bool = True,
                         keep_archive: bool = True) -> Path:
    """:func:`download_url` then :func:`extract_archive`; returns ``target``."""
    path = download_url(url, archive, md5=md5, sha256=sha256, progress=progress)
    extract_archive(path, target)
    if not keep_archive:
        path.unlink()
    return Path(target)
