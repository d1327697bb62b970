"""Fetch pretrained weights: mirrors, resumable downloads, retries, sha256 checks, atomic placement.

``fetch(name, dest_dir)`` puts the catalogue file ``name`` (see ``hrseg.weights.catalogue``) at
``dest_dir/<filename>`` and returns that path. Sources are tried in this order:

1. ``source=`` (``hrseg fetch get NAME --from PATH``): only that file or URL;
2. each of ``mirrors`` (``--mirror``), then ``$HRSEG_WEIGHTS_MIRROR``: a directory, a
   ``file://`` URL or an ``http(s)://`` base URL that holds the file under its catalogue filename;
3. the catalogue URLs, primary first.

HTTP downloads go to ``<filename>.part`` and resume with a ``Range`` request after a dropped
connection or an interrupted run (a ``<filename>.part.json`` sidecar remembers the URL and ETag,
so a partial file is never continued from a different source). A server that ignores ``Range``
(answers 200) restarts the file cleanly. Transient failures (timeouts, resets, HTTP 5xx/408/429)
are retried with exponential backoff; permanent ones (HTTP 404, unknown host) move on to the next
source at once. Local paths and ``file://`` URLs are copied.

Every complete file is checked against a sha256 before it is renamed into place (atomic, same
directory): the ``--sha256`` pin, else the catalogue's hash, else the hash recorded in the ledger
``dest_dir/.hrseg-sha256.json`` by the first successful fetch. A mismatch raises
``ChecksumError``, deletes the bad ``.part`` and leaves any existing file untouched. When every
source fails, ``FetchError`` lists each source with its reason and says which file to download
by hand and where to put it.
"""

from __future__ import annotations

import datetime
import http.client
import json
import logging
import os
import re
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hrseg import io as hio
from hrseg.errors import HrsegError
from hrseg.weights.catalogue import CATALOGUE, Benchmark, CatalogueError, WeightEntry, get_entry

__all__ = [
    "CATALOGUE",
    "LEDGER_NAME",
    "MIRROR_ENV",
    "Benchmark",
    "CatalogueError",
    "ChecksumError",
    "FetchError",
    "Source",
    "VerifyResult",
    "WeightEntry",
    "fetch",
    "fetch_many",
    "get_entry",
    "read_ledger",
    "sources_for",
    "verify",
]

logger = logging.getLogger(__name__)

MIRROR_ENV = "HRSEG_WEIGHTS_MIRROR"
LEDGER_NAME = ".hrseg-sha256.json"
LEDGER_FORMAT = "hrseg-sha256"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_S = 30.0
USER_AGENT = "hrseg-fetch/1"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class FetchError(HrsegError):
    """Weights could not be fetched, verified or recorded."""


class ChecksumError(FetchError):
    """A file's sha256 differs from the pinned, catalogue or recorded hash."""


class _SourceFailed(Exception):
    """This source cannot deliver the file; the message is the reason shown to the user."""


class _Retryable(Exception):
    """A transient failure: the same source is tried again after a pause."""


@dataclass(frozen=True)
class Source:
    """One place to get a file from: a URL or a local path, and who asked for it."""

    location: str
    origin: str  # "--from", "--mirror", "$HRSEG_WEIGHTS_MIRROR" or "catalogue"


@dataclass(frozen=True)
class VerifyResult:
    """The state of one weight file in a weights directory."""

    filename: str
    name: str | None  # catalogue name, None for a file only the ledger knows
    status: Literal["ok", "mismatch", "unrecorded", "missing"]
    expected: str | None
    actual: str | None
    basis: str  # where ``expected`` comes from


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def fetch(
    name_or_entry: str | WeightEntry,
    dest_dir: str | os.PathLike,
    *,
    mirrors: Sequence[str | os.PathLike] = (),
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
    source: str | os.PathLike | None = None,
    backoff: float = 1.0,
) -> Path:
    """Make sure ``dest_dir/<filename>`` holds the verified weights; return its path.

    ``retries`` is the number of extra attempts per HTTP source after a transient failure,
    ``backoff`` the first pause in seconds (doubled after each failure, at most 30 s).
    ``source`` imports one given file or URL instead of trying mirrors and catalogue URLs.
    """
    entry = get_entry(name_or_entry) if isinstance(name_or_entry, str) else name_or_entry
    if retries < 0:
        raise FetchError(f"retries={retries}: expected a count >= 0")
    dest_dir = Path(dest_dir)
    if dest_dir.exists() and not dest_dir.is_dir():
        raise FetchError(f"{dest_dir}: expected a directory for the weights, found a file")
    dest = dest_dir / entry.filename
    pinned = _normalise_sha256(sha256) if sha256 is not None else None
    if pinned and entry.sha256 and pinned != entry.sha256:
        raise FetchError(
            f"--sha256 {pinned} for {entry.name!r} contradicts the catalogue's sha256 {entry.sha256}"
        )
    record = read_ledger(dest_dir).get(entry.filename)
    expected, basis = _expected_hash(entry, pinned, record, dest_dir)

    if dest.exists():
        return _check_existing(entry, dest, expected, basis, pinned, source)

    sources = sources_for(entry, mirrors, source)
    if sources:
        dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest_dir / (entry.filename + PART_SUFFIX)
    attempts: list[tuple[Source, str]] = []
    mismatches: list[str] = []
    for src in sources:
        logger.info("fetching %s from %s", entry.filename, src.location)
        try:
            _retrieve(src.location, part, retries=retries, timeout=timeout, backoff=backoff, progress=progress)
        except _SourceFailed as exc:
            logger.warning("%s: %s", src.location, exc)
            attempts.append((src, str(exc)))
            continue
        actual = hio.sha256_file(part)
        if expected is not None and actual != expected:
            _discard_part(part)
            logger.warning("%s: sha256 %s, expected %s (%s)", src.location, actual, expected, basis)
            attempts.append((src, f"sha256 mismatch: got {actual}"))
            mismatches.append(actual)
            continue
        os.replace(part, dest)
        _discard_part(part)  # the sidecar
        _record_hash(dest_dir, entry, actual, src.location, pinned, record)
        logger.info("placed %s (%s, sha256 %s)", dest, _size(dest.stat().st_size), actual)
        return dest

    message = _failure_message(entry, dest, attempts)
    if mismatches:
        raise ChecksumError(_mismatch_message(entry, dest, expected, basis, mismatches[-1]) + "\n" + message)
    raise FetchError(message)


def fetch_many(names: Iterable[str], dest_dir: str | os.PathLike, **options: Any) -> list[Path]:
    """``fetch`` each name; try them all, then raise one error naming every failure."""
    names = list(names)
    if len(names) > 1 and (options.get("sha256") is not None or options.get("source") is not None):
        raise FetchError("--sha256 and --from apply to one file: give exactly one name with them")
    entries = [get_entry(name) for name in names]  # unknown names fail before any download
    paths: list[Path] = []
    failures: list[FetchError] = []
    for entry in entries:
        try:
            paths.append(fetch(entry, dest_dir, **options))
        except FetchError as exc:
            failures.append(exc)
    if len(failures) == 1 and len(entries) == 1:
        raise failures[0]
    if failures:
        detail = "\n\n".join(str(f) for f in failures)
        raise FetchError(f"{len(failures)} of {len(entries)} weight files could not be fetched:\n\n{detail}")
    return paths


def sources_for(
    entry: WeightEntry, mirrors: Sequence[str | os.PathLike] = (), source: str | os.PathLike | None = None
) -> list[Source]:
    """The sources ``fetch`` tries for ``entry``, in order (see the module docstring)."""
    if source is not None:
        return [Source(str(source), "--from")]
    found = [Source(_join(str(m), entry.filename), "--mirror") for m in mirrors]
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        found.append(Source(_join(env, entry.filename), f"${MIRROR_ENV}"))
    found.extend(Source(url, "catalogue") for url in entry.urls)
    return found


def verify(dest_dir: str | os.PathLike) -> list[VerifyResult]:
    """Re-hash the weight files in ``dest_dir`` against the catalogue and the ledger.

    Covers every catalogue file present in ``dest_dir`` and every file the ledger records.
    """
    dest_dir = Path(dest_dir)
    if not dest_dir.is_dir():
        raise FetchError(f"{dest_dir}: no such weights directory")
    ledger = read_ledger(dest_dir)
    by_file = {entry.filename: entry for entry in CATALOGUE.values()}
    filenames = sorted({f for f in by_file if (dest_dir / f).is_file()} | set(ledger))
    results = []
    for filename in filenames:
        entry = by_file.get(filename)
        record = ledger.get(filename)
        if entry is not None and entry.sha256:
            expected, basis = entry.sha256, "catalogue"
        elif record is not None:
            expected, basis = record["sha256"], f"ledger ({record.get('how', 'recorded')})"
        else:
            expected, basis = None, "no hash known"
        path = dest_dir / filename
        actual = hio.sha256_file(path) if path.is_file() else None
        if actual is None:
            status = "missing"
        elif expected is None:
            status = "unrecorded"
        else:
            status = "ok" if actual == expected else "mismatch"
        name = entry.name if entry is not None else (record or {}).get("name")
        results.append(VerifyResult(filename, name, status, expected, actual, basis))
    return results


def read_ledger(dest_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The recorded hashes in ``dest_dir/.hrseg-sha256.json`` by filename ({} if absent)."""
    path = Path(dest_dir) / LEDGER_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FetchError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix it or delete it to start a new ledger") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise FetchError(f"{path}: expected a JSON object with a 'files' mapping; delete it to start a new ledger")
    for filename, record in files.items():
        sha = record.get("sha256") if isinstance(record, dict) else None
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
            raise FetchError(f"{path}: files.{filename}.sha256 = {sha!r}; expected 64 lowercase hex digits")
    return files


# --------------------------------------------------------------------------------------------
# Hashes and the ledger
# --------------------------------------------------------------------------------------------


def _normalise_sha256(value: str) -> str:
    text = value.strip().lower()
    if not _SHA256_RE.fullmatch(text):
        raise FetchError(f"--sha256 {value!r}: expected 64 hexadecimal digits")
    return text


def _expected_hash(entry: WeightEntry, pinned: str | None, record: dict | None, dest_dir: Path) -> tuple[str | None, str]:
    if pinned:
        return pinned, "pinned with --sha256"
    if entry.sha256:
        return entry.sha256, "catalogue"
    if record is not None:
        return record["sha256"], f"recorded in {dest_dir / LEDGER_NAME} from {record.get('source', '?')}"
    return None, "no hash known"


def _record_hash(
    dest_dir: Path, entry: WeightEntry, sha: str, source: str, pinned: str | None, old: dict | None, *, how: str | None = None
) -> None:
    """Write the file's hash to the ledger (atomically) unless it is already recorded."""
    if old is not None and old.get("sha256") == sha:
        return
    if old is not None:
        logger.warning("%s: replacing the recorded sha256 %s by the pinned %s", entry.filename, old.get("sha256"), sha)
    ledger = read_ledger(dest_dir)
    ledger[entry.filename] = {
        "name": entry.name,
        "sha256": sha,
        "source": source,
        "how": how or ("pinned with --sha256" if pinned else ("catalogue" if entry.sha256 else "first download")),
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    hio.write_json(dest_dir / LEDGER_NAME, {"format": LEDGER_FORMAT, "version": 1, "files": ledger})


def _check_existing(
    entry: WeightEntry, dest: Path, expected: str | None, basis: str, pinned: str | None, source: object
) -> Path:
    """A file is already in place: verify it (or record its hash) instead of downloading again."""
    actual = hio.sha256_file(dest)
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"{dest} exists but its sha256 is {actual}, expected {expected} ({basis}). "
            f"Delete it to fetch {entry.name!r} again" + _reset_hint(entry, dest, basis, actual, ", or")
        )
    if source is not None:
        logger.warning("%s is already present; --from ignored (delete the file to import another copy)", dest)
    record = read_ledger(dest.parent).get(entry.filename)
    source_text = (record or {}).get("source") or str(dest)
    how = None if expected is not None else "adopted a file already in place"
    _record_hash(dest.parent, entry, actual, source_text, pinned, record, how=how)
    logger.info("%s: already present (sha256 %s%s)", dest, actual, ", now recorded" if how else "")
    return dest


def _reset_hint(entry: WeightEntry, dest: Path, basis: str, actual: str, lead: str = " To accept it,") -> str:
    if basis == "catalogue":
        return "; the catalogue hash cannot be overridden: the file is corrupt or not the official one."
    if basis.startswith("pinned"):
        return (
            f"{lead} check the hash given with --sha256 (it is the one that does not match); if this file is the "
            f"right one, pin its hash: hrseg fetch get {entry.name} --dest {dest.parent} --sha256 {actual}"
        )
    ledger = dest.parent / LEDGER_NAME
    return (
        f"{lead} if the new file is the right one, remove the {entry.filename!r} entry from {ledger} "
        f"(or delete that file), or pin the new hash: hrseg fetch get {entry.name} --dest {dest.parent} --sha256 {actual}"
    )


def _mismatch_message(entry: WeightEntry, dest: Path, expected: str | None, basis: str, actual: str) -> str:
    return (
        f"sha256 mismatch for {entry.name!r} ({entry.filename}): expected {expected} ({basis}), got {actual}. "
        f"Nothing was written to {dest}; the bad partial file was deleted."
        + _reset_hint(entry, dest, basis, actual)
    )


def _failure_message(entry: WeightEntry, dest: Path, attempts: list[tuple[Source, str]]) -> str:
    lines = [f"could not fetch {entry.name!r} ({entry.filename}, {entry.model}, {entry.dataset})."]
    if attempts:
        lines.append("Sources tried, in order:")
        lines.extend(f"  - {src.location} (via {src.origin}): {reason}" for src, reason in attempts)
    else:
        lines.append(
            "No source to try: the catalogue has no confirmed download URL for this file "
            f"and no mirror was given (--mirror or ${MIRROR_ENV})."
        )
    where = entry.urls[0] if entry.urls else entry.manual
    lines.append(f"Download {entry.filename} by hand from {where}")
    if entry.urls and entry.manual:
        lines.append(f"  other copies: {entry.manual}")
    lines.append(f"and put it at {dest.resolve()}, or import a downloaded copy with:")
    lines.append(f"  hrseg fetch get {entry.name} --dest {dest.parent} --from PATH")
    lines.append(f"Offline sites: set {MIRROR_ENV} to a directory or base URL that holds {entry.filename}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Retrieval: local copies and resumable HTTP
# --------------------------------------------------------------------------------------------


def _join(base: str, filename: str) -> str:
    """``base`` (a directory, file:// or http(s):// base URL) joined with ``filename``."""
    scheme = urllib.parse.urlsplit(base).scheme.lower()
    if scheme in ("http", "https", "file"):
        return base.rstrip("/") + "/" + urllib.parse.quote(filename)
    if len(scheme) > 1:  # one letter is a Windows drive
        raise FetchError(f"mirror {base!r}: expected a directory, a file:// URL or an http(s):// URL")
    return str(Path(base).expanduser() / filename)


def _retrieve(location: str, part: Path, *, retries: int, timeout: float, backoff: float, progress: bool) -> None:
    """Leave the complete file from ``location`` at ``part`` or raise ``_SourceFailed``."""
    scheme = urllib.parse.urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        _download_http(location, part, retries=retries, timeout=timeout, backoff=backoff, progress=progress)
    elif scheme == "file":
        _copy_local(_file_url_path(location), part)
    elif len(scheme) > 1:
        raise _SourceFailed(f"unsupported URL scheme {scheme!r} (expected http, https, file or a path)")
    else:
        _copy_local(Path(location).expanduser(), part)


def _file_url_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise _SourceFailed(f"file URL with a host ({parts.netloc!r}) is not supported; mount it and give a path")
    return Path(urllib.request.url2pathname(parts.path))


def _copy_local(path: Path, part: Path) -> None:
    if not path.is_file():
        raise _SourceFailed("no such file" if not path.exists() else "not a regular file")
    _discard_part(part)
    try:
        with open(path, "rb") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as exc:
        _discard_part(part)
        raise _SourceFailed(f"copy failed: {exc}") from None


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _discard_part(part: Path) -> None:
    """Delete ``part`` (if it still exists) and its sidecar."""
    for path in (part, _sidecar(part)):
        path.unlink(missing_ok=True)


def _read_sidecar(part: Path) -> dict[str, Any]:
    try:
        data = json.loads(_sidecar(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _download_http(url: str, part: Path, *, retries: int, timeout: float, backoff: float, progress: bool) -> None:
    if part.exists() and _read_sidecar(part).get("url") != url:
        _discard_part(part)  # a partial file from another source (or of unknown origin)
    for attempt in range(retries + 1):
        try:
            _http_attempt(url, part, timeout=timeout, progress=progress)
            return
        except _Retryable as exc:
            if attempt == retries:
                tries = f"{retries + 1} attempt{'s' if retries else ''}"
                kept = f"; {_size(part.stat().st_size)} kept in {part.name} to resume" if part.exists() else ""
                raise _SourceFailed(f"{exc} (gave up after {tries}{kept})") from None
            delay = min(backoff * 2**attempt, MAX_BACKOFF_S)
            logger.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, exc, delay, attempt + 2, retries + 1)
            time.sleep(delay)


def _http_attempt(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """One GET; appends to ``part`` after a 206, rewrites it after a 200."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = _read_sidecar(part).get("etag")
        if etag and not etag.startswith("W/"):
            headers["If-Range"] = etag
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and _range_total(exc) == offset:
            exc.close()
            return  # the partial file already holds every byte; the sha256 check follows
        _raise_for_http_error(exc, part, offset)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            raise _SourceFailed(f"cannot resolve the host ({reason}); no network?") from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise _SourceFailed(f"TLS certificate not accepted ({reason})") from None
        raise _Retryable(f"cannot connect ({reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Retryable(f"request failed ({exc.__class__.__name__}: {exc})") from None

    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            length = response.headers.get("Content-Length", "")
            if total is None and length.isdigit():
                total = offset + int(length)
            if start != offset:
                _discard_part(part)
                raise _Retryable(f"server resumed at byte {start}, expected {offset}; restarting from byte 0")
            mode = "ab"
        else:
            if offset:
                logger.info("%s: server ignored the resume request (HTTP %d); restarting from byte 0", url, response.status)
            offset = 0
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            mode = "wb"
            hio.write_json(_sidecar(part), {"url": url, "etag": response.headers.get("ETag")})
        done = _stream(response, part, mode, offset, total, label=part.name[: -len(PART_SUFFIX)], progress=progress)
    if total is not None and done != total:
        raise _Retryable(f"connection closed after {done} of {total} bytes")


def _range_total(exc: urllib.error.HTTPError) -> int | None:
    """The full size from a 416 answer's ``Content-Range: bytes */SIZE``, if given."""
    match = re.fullmatch(r"bytes\s+\*/(\d+)", (exc.headers.get("Content-Range") if exc.headers else None) or "")
    return int(match.group(1)) if match else None


def _raise_for_http_error(exc: urllib.error.HTTPError, part: Path, offset: int) -> None:
    code, reason = exc.code, f"HTTP {exc.code} {exc.reason}"
    exc.close()
    if code == 416 and offset:
        _discard_part(part)
        raise _Retryable("server rejected the resume range; restarting from byte 0")
    if code in (408, 429) or code >= 500:
        raise _Retryable(reason)
    raise _SourceFailed(reason)


def _parse_content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, full size or None) of a ``Content-Range: bytes A-B/SIZE`` header."""
    match = _CONTENT_RANGE_RE.fullmatch((value or "").strip())
    if not match:
        return -1, None  # unusable: treated as a wrong start, so the download restarts
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _stream(response: Any, part: Path, mode: str, offset: int, total: int | None, *, label: str, progress: bool) -> int:
    """Copy the response body to ``part``; return the file size reached."""
    done = offset
    reporter = _Reporter(label, total, offset, enabled=progress)
    try:
        with open(part, mode) as handle:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    handle.flush()
                    raise _Retryable(
                        f"connection lost after {done} of {total if total is not None else '?'} bytes "
                        f"({exc.__class__.__name__})"
                    ) from None
                if not chunk:
                    break
                handle.write(chunk)
                done += len(chunk)
                reporter.update(done)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        reporter.close()
    return done


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class _Reporter:
    """Download progress: a rich bar on a TTY, a log line every 10 % otherwise."""

    def __init__(self, label: str, total: int | None, done: int, *, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.bar = None
        self.next_log = self._next_mark(done)
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task(label, total=total, completed=done)
            self.bar.start()
        elif enabled:
            resumed = f", resuming at {_size(done)}" if done else ""
            logger.info("%s: downloading %s%s", label, _size(total) if total else "(size unknown)", resumed)

    def _next_mark(self, done: int) -> int:
        step = self.total // 10 if self.total else 64 << 20
        step = max(step, 1)
        return (done // step + 1) * step

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
        elif self.enabled and done >= self.next_log:
            share = f" ({100 * done // self.total}%)" if self.total else ""
            logger.info("%s: %s of %s%s", self.label, _size(done), _size(self.total) if self.total else "?", share)
            self.next_log = self._next_mark(done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
