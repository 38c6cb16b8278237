"""Fetch a public file safely: resumable download, checked against its size and checksum.

:func:`download_url` streams a URL to ``<dest>.part`` with a progress bar and renames it to
``dest`` only once the checksum (MD5 or SHA-256) matches. An interrupted transfer leaves the
``.part`` file in place (with ``.part.json``: the server's size, ETag, Last-Modified) and the next
call resumes it with an HTTP ``Range`` request only when the server confirms it is the same file;
otherwise it starts again. A *completed* transfer whose size or checksum does not match is
deleted and :class:`ChecksumError` is raised, naming both digests. Every archive camlib knows
(:data:`KNOWN_FILES`) has its size and checksum; a file with neither is accepted only when the
server announced its length. :func:`download_and_extract` then hands the archive to
:func:`camlib.data.archives.extract_archive`, which unpacks it safely.

Introduced in lesson 03 (getting CUB-200-2011 for the paper's section 4.1 experiment).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..config import progress_bar
from .archives import extract_archive


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected digest."""


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

    Reached from :class:`~camlib.data.cub.CUB200` with ``download=True``, as lesson 04's gpu path
    opens it.
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


def download_and_extract(url: str, archive: str | os.PathLike, target: str | os.PathLike, *,
                         md5: str | None = None, sha256: str | None = None, size: int | None = None,
                         progress: bool = True, keep_archive: bool = True) -> Path:
    """:func:`download_url` then :func:`~camlib.data.archives.extract_archive`; returns ``target``."""
    path = download_url(url, archive, md5=md5, sha256=sha256, size=size, progress=progress)
    extract_archive(path, target)
    if not keep_archive:
        path.unlink()
    return Path(target)
