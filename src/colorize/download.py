"""Downloading a data set over HTTP(S): resumable, retried, checksummed, then unpacked.

``fetch`` gets one URL into one file. It streams into ``<dest>.part`` and only moves the
file into place (``os.replace``) once it is complete and its sha256 checks out, so ``dest``
is either absent or whole. A dropped connection is resumed with ``Range: bytes=N-``;
connection errors, timeouts, short bodies and HTTP 5xx (and 408/429) are retried with
exponential backoff; other HTTP 4xx fail at once.

``acquire`` is the entry point of the download stage. From the URL's suffix (or, lacking
one, the content) it decides between an archive (unpacked with ``archive.safe_extract``), a
single image, and a text file listing image URLs; it returns one ``AcquiredFile`` per file,
so the caller can log where each came from and which ones failed.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_RATIO,
    archive_format,
    detect_format,
    safe_extract,
)

log = logging.getLogger("colorize.download")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
URL_LIST_SUFFIXES = (".txt", ".lst")
USER_AGENT = f"colorize/{__version__} (+urllib)"
MAX_BACKOFF_S = 60.0  # the wait between attempts doubles up to this
_CHUNK = 1 << 16
_RETRY_STATUSES = frozenset({408, 429})  # 4xx that mean "try again later"; all 5xx are retried too
_NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Leading bytes of the image formats we accept, for downloads whose URL has no suffix.
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
)


class DownloadError(RuntimeError):
    """A URL could not be fetched: an HTTP error, or the retries ran out."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status  # the HTTP status, when the server gave one

    def __reduce__(self):  # keep url and status through pickling (process pools)
        return type(self), self.args, self.__dict__


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


@dataclass(frozen=True)
class AcquiredFile:
    """One row of the download log: a file, where it came from, and whether it arrived."""

    url: str  # what was fetched (for an archive member: the archive's URL)
    relpath: str  # where it is (or would have been) under raw_dir, "/"-separated
    error: str | None = None  # why it failed; None when it arrived

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else f"error: {self.error}"


def fetch(
    url: str,
    dest,
    sha256: str | None = None,
    *,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming, retrying, checking ``sha256``); return ``dest``.

    ``retries`` counts consecutive failed attempts that brought no new bytes, so a long
    download over a flaky link keeps going while it makes progress. ``timeout`` is per
    socket operation (connect, each read), in seconds. Raises ``DownloadError`` (HTTP 4xx,
    or retries spent) or ``ChecksumError``; on any failure ``dest.part`` is removed and
    ``dest`` is left as it was: it is only ever replaced by a complete, verified file.
    """
    path, _ = _fetch(
        url, dest, sha256, retries=retries, backoff=backoff, timeout=timeout, progress=progress
    )
    return path


def acquire(
    source: str,
    raw_dir,
    *,
    sha256: str | None = None,
    progress: bool = True,
    max_total_bytes: int | None = None,
    max_ratio: float = DEFAULT_MAX_RATIO,
    max_members: int = DEFAULT_MAX_MEMBERS,
    cache_dir=None,
    workers: int = 4,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 30,
) -> list[AcquiredFile]:
    """Put the files an http(s) ``source`` stands for into ``raw_dir``; one record per file.

    * an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) is
      downloaded into ``cache_dir`` (default: ``downloads/`` beside ``raw_dir``), unpacked
      with ``safe_extract`` (the caps apply: ``max_ratio``, ``max_total_bytes`` (None =
      ``max_ratio`` x the archive's size), ``max_members``), then deleted (kept if refused, to inspect);
    * an image (``.jpg .jpeg .png .tif .tiff .bmp .webp .gif``) goes to ``raw_dir/<name>``;
    * a URL list (``.txt``/``.lst``, or served as ``text/plain``): one URL per line, optionally
      followed by its sha256; blank lines and ``#`` comments are skipped, relative URLs are
      taken relative to the list's. Each is fetched (``workers`` at a time) into
      ``raw_dir/<basename>``; names two URLs share get a prefix from the URL's hash. A URL
      that fails is recorded in its ``AcquiredFile.error`` and the others go on; if every
      one fails, ``DownloadError``.

    A URL without a known suffix is downloaded first and recognised by its content.
    ``sha256`` checks the one file downloaded from ``source`` (archive, image or list).
    """
    _check_url(source)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir is not None else raw_dir.parent / "downloads"
    opts = {"retries": retries, "backoff": backoff, "timeout": timeout}
    name = url_basename(source)
    kind = _kind_from_name(name)
    if kind == "image":
        fetch(source, raw_dir / name, sha256, progress=progress, **opts)
        return [AcquiredFile(source, name)]

    cached, content_type = _fetch(source, cache_dir / name, sha256, progress=progress, **opts)
    if kind is None:
        kind, image_suffix = _sniff(cached, content_type, source)
        if kind == "image":
            name += image_suffix  # so that later stages see an image suffix
            shutil.move(cached, raw_dir / name)  # cache_dir may be on another file system
            _remove_if_empty(cache_dir)
            return [AcquiredFile(source, name)]
    if kind == "archive":
        files = safe_extract(
            cached,
            raw_dir,
            max_total_bytes=max_total_bytes,
            max_ratio=max_ratio,
            max_members=max_members,
        )
        if not files:
            log.warning("%s holds no files", source)
        records = [AcquiredFile(source, p.relative_to(raw_dir).as_posix()) for p in files]
    else:
        text = cached.read_text(encoding="utf-8-sig", errors="replace")
        records = _fetch_url_list(source, text, raw_dir, workers=workers, progress=progress, **opts)
    cached.unlink()
    _remove_if_empty(cache_dir)
    return records


def url_basename(url: str) -> str:
    """The last path segment of ``url``, decoded and made safe as a file name."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", name).strip().lstrip(".")
    if not name:
        return f"download-{_short_hash(url)}"
    if len(name.encode()) > 200:  # file systems allow 255 bytes; leave room for .part and a prefix
        suffix = "".join(Path(name).suffixes)[-20:]
        name = f"{name[:100]}-{_short_hash(url)}{suffix}"
    return name


# -- one file ---------------------------------------------------------------------------------


class _Retry(Exception):
    """An attempt failed in a way worth retrying; the message says how."""


class _Transfer:
    """One download's state across attempts: bytes so far, their hash, the expected total."""

    def __init__(self, url: str, fh, bar: tqdm, timeout: float):
        self.url = url
        self.fh = fh
        self.bar = bar
        self.timeout = timeout
        self.have = 0
        self.total: int | None = None
        self.validator: str | None = None  # ETag or Last-Modified, sent as If-Range on resume
        self.content_type: str | None = None
        self.hasher = hashlib.sha256()

    def attempt(self) -> None:
        """Get the rest of the file (all of it the first time); raise _Retry or DownloadError."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.have:
            headers["Range"] = f"bytes={self.have}-"
            if self.validator:
                headers["If-Range"] = self.validator
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416:  # our Range no longer fits the file: start again from byte 0
                self._restart()
            if e.code >= 500 or e.code in _RETRY_STATUSES or e.code == 416:
                raise _Retry(f"HTTP {e.code} {e.reason}") from None
            raise DownloadError(
                f"cannot download {self.url}: HTTP {e.code} {e.reason}", url=self.url, status=e.code
            ) from None
        except http.client.InvalidURL as e:
            raise DownloadError(f"cannot download {self.url}: {e}", url=self.url) from None
        except _NETWORK_ERRORS as e:
            reason = getattr(e, "reason", None)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise DownloadError(f"cannot download {self.url}: {reason}", url=self.url) from None
            raise _Retry(_describe(e)) from None
        with response:
            self._begin_body(response)
            try:
                while chunk := response.read(_CHUNK):
                    self.fh.write(chunk)
                    self.hasher.update(chunk)
                    self.have += len(chunk)
                    self.bar.update(len(chunk))
            except _NETWORK_ERRORS as e:
                raise _Retry(f"{_describe(e)} after {self.have:,} bytes") from None
        if self.total is not None and self.have != self.total:
            if self.have > self.total:
                self._restart()
            raise _Retry(f"connection closed after {self.have:,} of {self.total:,} bytes")

    def _begin_body(self, response) -> None:
        length = _int_or_none(response.headers.get("Content-Length"))
        if response.status == 206 and self.have:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != self.have:
                self._restart()
                raise _Retry(f"server resumed at byte {start}, not {self.have}")
            log.info("resuming %s at byte %s", self.url, f"{start:,}")
            self.total = (
                total if total is not None else (start + length if length is not None else None)
            )
            if self.total is not None and self.bar.total != self.total:
                self.bar.total = self.total
                self.bar.refresh()
            return
        if response.status == 206:  # a part we did not ask for: cannot use it
            raise _Retry("unexpected 206 Partial Content")
        if self.have:
            log.info(
                "%s: the server ignored the Range request; starting again from byte 0", self.url
            )
            self._restart()
        self.total = length
        self.bar.reset(total=length)
        etag = response.headers.get("ETag")
        strong_etag = etag if etag and not etag.startswith("W/") else None
        self.validator = strong_etag or response.headers.get("Last-Modified")
        self.content_type = response.headers.get("Content-Type")

    def _restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.have = 0
        self.total = None
        self.hasher = hashlib.sha256()
        self.bar.reset()


def _fetch(
    url: str,
    dest,
    sha256: str | None,
    *,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
) -> tuple[Path, str | None]:
    """``fetch``, also returning the response's Content-Type."""
    _check_url(url)
    expected = _normalise_sha256(sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.debug("downloading %s to %s", url, dest)
    try:
        with (
            open(part, "wb") as fh,
            tqdm(
                desc=dest.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            transfer = _Transfer(url, fh, bar, timeout)
            _attempt_until_done(transfer, retries, backoff)
            fh.flush()
            os.fsync(fh.fileno())
        actual = transfer.hasher.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual} "
                f"({transfer.have:,} bytes); the download was discarded",
                url=url,
            )
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    log.info("downloaded %s -> %s (%s bytes, sha256 %s)", url, dest, f"{transfer.have:,}", actual)
    return dest, transfer.content_type


def _attempt_until_done(transfer: _Transfer, retries: int, backoff: float) -> None:
    attempts = 0
    failures = 0  # consecutive failed attempts that brought no new bytes
    best = 0
    while True:
        attempts += 1
        try:
            transfer.attempt()
            return
        except _Retry as e:
            failures = 1 if transfer.have > best else failures + 1
            best = max(best, transfer.have)
            if failures > retries:
                raise DownloadError(
                    f"cannot download {transfer.url}: gave up after {attempts} attempts "
                    f"({retries} retries); last error: {e}",
                    url=transfer.url,
                ) from None
            delay = min(backoff * 2 ** (failures - 1), MAX_BACKOFF_S)
            log.warning(
                "attempt %d at %s failed: %s; retrying in %.2g s", attempts, transfer.url, e, delay
            )
            time.sleep(delay)


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); the total is None when given as '*'."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _check_url(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _SHA256_RE.fullmatch(digest):
        raise ValueError(f"sha256 {sha256!r} is not 64 hexadecimal digits")
    return digest


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# -- what a URL stands for ----------------------------------------------------------------------


def _kind_from_name(name: str) -> str | None:
    lower = name.lower()
    if archive_format(lower):
        return "archive"
    if lower.endswith(IMAGE_SUFFIXES):
        return "image"
    if lower.endswith(URL_LIST_SUFFIXES):
        return "list"
    return None


def _sniff(path: Path, content_type: str | None, url: str) -> tuple[str, str]:
    """(kind, image suffix) of a download whose URL has no known suffix."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime == "text/plain":
        return "list", ""
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, suffix in _IMAGE_MAGIC:
        if head.startswith(magic):
            return "image", suffix
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", ".webp"
    if detect_format(path):
        return "archive", ""
    first = next(
        (
            ln.strip()
            for ln in head.decode("utf-8", "replace").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ),
        "",
    )
    if first.lower().startswith(("http://", "https://")):
        return "list", ""
    raise DownloadError(
        f"cannot tell what {url} is (Content-Type {content_type!r}): not an archive, an image or "
        "a list of URLs; end the URL with a suffix such as .zip, .tar.gz, .jpg or .txt",
        url=url,
    )


# -- a list of URLs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ListItem:
    url: str
    sha256: str | None
    relpath: str = ""
    error: str | None = None  # set when the line itself is wrong


def _parse_url_list(list_url: str, text: str) -> list[_ListItem]:
    items: list[_ListItem] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{list_url} line {lineno}"
        if len(fields) > 2:
            items.append(
                _ListItem(
                    line, None, error=f"{where}: expected 'URL [SHA256]', got {len(fields)} fields"
                )
            )
            continue
        url = urllib.parse.urljoin(list_url, fields[0])
        sha256 = fields[1].lower() if len(fields) == 2 else None
        if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
            items.append(_ListItem(fields[0], None, error=f"{where}: not an http(s) URL"))
        elif sha256 is not None and not _SHA256_RE.fullmatch(sha256):
            items.append(
                _ListItem(
                    url, None, error=f"{where}: {fields[1]!r} is not a sha256 (64 hex digits)"
                )
            )
        elif url in seen:
            log.info("%s: %s is listed again; fetched once", where, url)
        else:
            seen.add(url)
            items.append(_ListItem(url, sha256))
    return _name_items(items)


def _name_items(items: list[_ListItem]) -> list[_ListItem]:
    """File names from URL basenames; a name two URLs share (any case) gets a URL-hash prefix."""
    names = {it.url: url_basename(it.url) for it in items if it.error is None}
    users: dict[str, int] = {}
    for name in names.values():
        users[name.casefold()] = users.get(name.casefold(), 0) + 1
    named = []
    for it in items:
        if it.error is None:
            name = names[it.url]
            if users[name.casefold()] > 1:
                name = f"{_short_hash(it.url)}-{name}"
            it = _ListItem(it.url, it.sha256, relpath=name)
        named.append(it)
    return named


def _fetch_url_list(
    list_url: str, text: str, raw_dir: Path, *, workers: int, progress: bool, **opts
) -> list[AcquiredFile]:
    items = _parse_url_list(list_url, text)
    if not items:
        raise DownloadError(f"{list_url} lists no URLs", url=list_url)

    def fetch_one(item: _ListItem) -> AcquiredFile:
        if item.error is not None:
            return AcquiredFile(item.url, item.relpath, item.error)
        try:
            fetch(item.url, raw_dir / item.relpath, item.sha256, progress=False, **opts)
        except DownloadError as e:
            return AcquiredFile(item.url, item.relpath, str(e))
        return AcquiredFile(item.url, item.relpath)

    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(items), desc="files", unit="file", disable=not progress) as bar,
    ):
        futures = [pool.submit(fetch_one, it) for it in items]
        try:
            for future in as_completed(futures):
                record = future.result()  # raises only for what is not one URL's fault (disk full)
                if not record.ok:
                    log.warning("failed: %s (%s)", record.url, record.error)
                bar.update(1)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        records = [f.result() for f in futures]

    n_ok = sum(r.ok for r in records)
    log.info(
        "fetched %d of the %d files listed in %s; %d failed",
        n_ok,
        len(records),
        list_url,
        len(records) - n_ok,
    )
    if n_ok == 0:
        raise DownloadError(
            f"none of the {len(records)} files listed in {list_url} could be fetched; "
            f"first error: {records[0].error}",
            url=list_url,
        )
    return records


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
