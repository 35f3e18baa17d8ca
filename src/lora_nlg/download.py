"""Verified, resumable HTTP(S) downloads.

`download(url, dest, sha256=None, size=None)` writes into `<dest>.part` beside the target, resumes an
interrupted transfer with an HTTP Range request, shows a tqdm progress bar, checks size and sha256 and only
then renames the file into place, so `dest` either does not exist or holds verified bytes. When the host
cannot be reached it fails at once and says how to supply the file by hand. Used for the raw datasets
(`lora_nlg.data.raw_files`) and for pretrained weights.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK_BYTES = 1 << 20
USER_AGENT = "lora-nlg-download/0.1"
RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """A file could not be fetched or failed verification; nothing is left at the destination."""


def sha256_file(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def manual_hint(url: str, dest: Path, sha256: str | None, size: int | None) -> str:
    expected = f"sha256 {sha256}" if sha256 else "no sha256 pinned"
    if size is not None:
        expected += f", {size} bytes"
    return (f"To supply it by hand, fetch {url} on a machine with network access and save it as {dest} "
            f"({expected}).")


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, size: int | None = None, *,
             retries: int = 3, timeout: float = 30.0, progress: bool = True) -> str:
    """Fetch `url` into `dest` and return the file's sha256.

    An existing `dest` is checked instead of fetched again (a mismatch is an error: we never overwrite a file
    we did not verify). Without a pinned `sha256` the computed hash is printed with a warning so it can be
    pinned. A connection cut mid-transfer is resumed up to `retries` times; an unreachable host fails at once.
    """
    dest = Path(dest)
    sha256 = sha256.lower() if sha256 else None
    if dest.exists():
        return _check_existing(dest, sha256, size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, size, timeout, progress, manual_hint(url, dest, sha256, size))
            break
        except _Interrupted as e:
            if attempt < retries:
                time.sleep(0.25 * 2 ** attempt)
            else:
                raise DownloadError(f"download of {url} kept failing ({e}); the partial file {part} is kept "
                                    f"and the next run resumes it. {manual_hint(url, dest, sha256, size)}") from e
    return _finalise(url, part, dest, sha256, size)


class _Interrupted(Exception):
    """A transfer that stopped early but can be resumed."""


def _check_existing(dest: Path, sha256: str | None, size: int | None) -> str:
    actual_size = dest.stat().st_size
    if size is not None and actual_size != size:
        raise DownloadError(f"{dest} exists but has {actual_size} bytes, expected {size}; delete it to download "
                            f"it again")
    digest = sha256_file(dest)
    if sha256 and digest != sha256:
        raise DownloadError(f"{dest} exists but its sha256 is {digest}, expected {sha256}; delete it to download "
                            f"it again")
    if not sha256:
        _warn(f"{dest} already present; no sha256 pinned, so it is not verified (sha256 {digest})")
    return digest


def _fetch_into(url: str, part: Path, size: int | None, timeout: float, progress: bool, hint: str) -> None:
    """One HTTP request appending to `part`; returns when the file is complete, raises _Interrupted if not."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: complete if the server's size is ours
            if e.headers.get("Content-Range", "").rsplit("/", 1)[-1] == str(offset):
                return
            part.unlink()
            raise _Interrupted("partial file does not match the server's file; starting over") from e
        if e.code in RETRYABLE_HTTP:
            raise _Interrupted(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}. {hint}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason}): offline or server down? {hint}") from e
    with response:
        if offset and response.status != 206:  # server ignored Range: start over
            offset = 0
        total = _expected_total(response, offset)
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: server reports {total} bytes but {size} are expected")
        received = offset
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=None if progress else True, leave=False) as bar:
            try:
                while block := response.read(CHUNK_BYTES):
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError, socket.timeout) as e:
                raise _Interrupted(f"connection lost after {received} bytes: {e!r}") from e
    if total is not None and received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes")


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    if response.status == 206 and "/" in content_range:
        start = content_range.split()[-1].split("-")[0]
        if start.isdigit() and int(start) != offset:
            raise _Interrupted(f"server resumed at byte {start}, asked for {offset}")
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _finalise(url: str, part: Path, dest: Path, sha256: str | None, size: int | None) -> str:
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise DownloadError(f"{url}: got {actual_size} bytes, expected {size}; the partial file was removed")
    digest = sha256_file(part)
    if sha256 and digest != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 mismatch (got {digest}, expected {sha256}); the download was "
                            f"removed. The file may have changed upstream or been corrupted in transit.")
    if not sha256:
        _warn(f"no sha256 pinned for {url}: downloaded {actual_size} bytes with sha256 {digest} "
              f"(NOT verified; pin this hash to verify future downloads)")
    os.replace(part, dest)
    return digest


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
