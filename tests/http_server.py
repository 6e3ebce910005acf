"""A real HTTP server on 127.0.0.1 for download tests, with faults you can switch on.

Usage (a fresh server per test, serving files from a temporary folder)::

    from http_server import http_server  # noqa: F401  (makes the fixture available here)

    def test_resume(http_server, tmp_path):
        url = http_server.add_file("data/big.bin", payload)  # -> "http://127.0.0.1:PORT/data/big.bin"
        http_server.drop("/data/big.bin", after_bytes=1000)  # 1st GET: hang up after 1000 body bytes
        ...
        assert http_server.requests_for("/data/big.bin")[1].headers["Range"] == "bytes=1000-"

or in another module ``pytest_plugins = ["http_server"]`` (``tests/`` is on ``sys.path``
under pytest's default rootdir-based import mode). For one server per module::

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with LocalHTTPServer(tmp_path_factory.mktemp("www")) as srv:
            yield srv

(the ``http_server`` fixture also puts 127.0.0.1 in ``no_proxy``, so that a proxy set in
the environment does not catch the requests; do the same if you build your own.)

What it does:

* ``GET``/``HEAD`` of files under ``root`` (``add_file`` writes them), with Content-Length,
  a Content-Type from the suffix (or ``add_file(..., content_type=...)``), a strong ETag,
  and ``Range: bytes=N-`` / ``bytes=N-M`` answered with 206 + Content-Range (416 past the
  end; ``If-Range`` with a stale ETag gets the whole file). A missing file is a 404.
* Faults, per path, used up in the order they were added; once used up, the path is served
  normally:
  ``fail(path, status=500, times=1)`` answers ``status`` (a 404 forever: ``times=None``);
  ``drop(path, after_bytes, times=1)`` sends the headers and the first ``after_bytes`` of the
  body, then closes the connection; ``stall(path, seconds, times=1)`` waits before answering
  (to test timeouts); ``ignore_range(path, times=None)`` answers Range requests with a 200.
* ``requests`` records every request (method, path, headers); ``requests_for(path)`` and
  ``count(path)`` filter it.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # as sent; look up with the usual capitalisation ("Range")


@dataclass
class _Fault:
    kind: str  # "fail", "drop", "stall" or "ignore_range"
    remaining: int | None  # None: forever
    status: int = 500
    after_bytes: int = 0
    seconds: float = 0.0


@dataclass
class _Resource:
    content_type: str | None = None
    faults: list[_Fault] = field(default_factory=list)


class LocalHTTPServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 at a free port; use as a context manager."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[RecordedRequest] = []
        self._resources: dict[str, _Resource] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- content ------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{urllib.parse.quote(path.lstrip('/'))}"

    def add_file(self, path: str, data: bytes, *, content_type: str | None = None) -> str:
        """Serve ``data`` at ``/path``; return its URL."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if content_type is not None:
            self._resource(path).content_type = content_type
        return self.url(path)

    # -- faults -------------------------------------------------------------------------

    def fail(self, path: str, status: int = 500, times: int | None = 1) -> None:
        self._add_fault(path, _Fault("fail", times, status=status))

    def drop(self, path: str, after_bytes: int, times: int | None = 1) -> None:
        self._add_fault(path, _Fault("drop", times, after_bytes=after_bytes))

    def stall(self, path: str, seconds: float, times: int | None = 1) -> None:
        self._add_fault(path, _Fault("stall", times, seconds=seconds))

    def ignore_range(self, path: str, times: int | None = None) -> None:
        self._add_fault(path, _Fault("ignore_range", times))

    # -- what happened ------------------------------------------------------------------

    def requests_for(self, path: str) -> list[RecordedRequest]:
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def count(self, path: str) -> int:
        return len(self.requests_for(path))

    # -- internals ----------------------------------------------------------------------

    def _resource(self, path: str) -> _Resource:
        return self._resources.setdefault("/" + path.lstrip("/"), _Resource())

    def _add_fault(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._resource(path).faults.append(fault)

    def _take_faults(self, path: str) -> list[_Fault]:
        """The faults for this request: the first fault of each kind still in force, used once."""
        taken: list[_Fault] = []
        with self._lock:
            for fault in self._resources.get(path, _Resource()).faults:
                if fault.remaining == 0 or any(t.kind == fault.kind for t in taken):
                    continue
                if fault.kind in ("fail", "drop") and any(
                    t.kind in ("fail", "drop") for t in taken
                ):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                taken.append(fault)
        return taken


class _QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled handler must not hold up the end of a test

    def handle_error(self, request, client_address):
        """A client that hung up (a timeout test) is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(server: LocalHTTPServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep pytest's output clean
            pass

        def do_HEAD(self):
            self._serve(send_body=False)

        def do_GET(self):
            self._serve(send_body=True)

        def _serve(self, send_body: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            with server._lock:
                server.requests.append(
                    RecordedRequest(self.command, path, dict(self.headers.items()))
                )
            faults = {f.kind: f for f in server._take_faults(path)}
            if "stall" in faults:
                time.sleep(faults["stall"].seconds)
            if "fail" in faults:
                return self._send_status(faults["fail"].status)
            file = (server.root / path.lstrip("/")).resolve()
            if not file.is_relative_to(server.root.resolve()) or not file.is_file():
                return self._send_status(404)
            data = file.read_bytes()
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            resource = server._resources.get(path, _Resource())
            content_type = (
                resource.content_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
            )
            status, body, extra = 200, data, {}
            range_header = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if (
                range_header
                and "ignore_range" not in faults
                and (if_range is None or if_range == etag)
            ):
                start, end = _parse_range(range_header, len(data))
                if start is None:
                    return self._send_status(416, {"Content-Range": f"bytes */{len(data)}"})
                status, body = 206, data[start : end + 1]
                extra = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "bytes")
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if not send_body:
                return
            if "drop" in faults:
                self.wfile.write(body[: faults["drop"].after_bytes])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def _send_status(self, status: int, headers: dict[str, str] | None = None) -> None:
            body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def _parse_range(value: str, size: int) -> tuple[int | None, int | None]:
    """'bytes=N-' or 'bytes=N-M' -> (first, last) byte, or (None, None) if unsatisfiable."""
    unit, _, spec = value.partition("=")
    first, _, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not first.isdigit() or int(first) >= size:
        return None, None
    end = min(int(last), size - 1) if last.isdigit() else size - 1
    return int(first), end


@pytest.fixture
def http_server(tmp_path_factory, monkeypatch):
    """A fresh ``LocalHTTPServer`` for one test, serving from its own temporary folder."""
    for var in ("no_proxy", "NO_PROXY"):  # an http_proxy set for CI must not catch 127.0.0.1
        monkeypatch.setenv(
            var, ",".join(filter(None, ["127.0.0.1", "localhost", os.environ.get(var)]))
        )
    with LocalHTTPServer(tmp_path_factory.mktemp("www")) as server:
        yield server
