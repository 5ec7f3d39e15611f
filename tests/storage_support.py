"""An S3 API server on 127.0.0.1 (moto's server mode) and a fault-injecting proxy in front of it.

The proxy is a small threaded HTTP/1.1 server that forwards each request to the upstream
server and can, for requests whose path contains a given text, answer 503 or 429, drop the
connection, never answer (stall), cut the body short (with the full Content-Length: a broken
read; or with a rewritten one: a short but well-formed response), or flip a byte of the body.
It counts the GETs of every path, which is how the tests count downloads.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import itertools
import logging
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>Service is unable to handle request.</Message></Error>"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def options(endpoint: str, **extra: Any) -> dict[str, Any]:
    """storage_options for the local server: its endpoint, fake keys, quick bounded retries."""
    config = {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5}
    config.update(extra.pop("config_kwargs", {}))
    return {
        "endpoint_url": endpoint,
        "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"region_name": REGION},
        "config_kwargs": config,
        **extra,
    }


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)


@dataclass
class Fault:
    """Apply ``kind`` to the next ``times`` requests whose path contains ``match``."""

    kind: str  # "503" | "429" | "drop" | "cut" | "short" | "flip" | "stall"
    match: str
    times: int = 1
    method: str = "GET"


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``upstream`` (http://host:port)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.faults: list[Fault] = []
        self.gets: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (method, path), in arrival order
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closing = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # many worker processes connect at once
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that exits mid-connection (a finished worker) is no fault

        self._server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()  # ends the stalled answers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:  # kept alive by clients: ends their threads
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, kind: str, match: str, times: int = 1, method: str = "GET") -> None:
        with self._lock:
            self.faults.append(Fault(kind, match, times, method))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.gets.clear()
            self.requests.clear()
            self.injected.clear()

    def downloads(self, text: str) -> int:
        """GETs answered for paths containing ``text``."""
        with self._lock:
            return sum(n for path, n in self.gets.items() if text in path)

    def _fault(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests.append((method, path.split("?")[0]))
            if method == "GET":
                self.gets[path.split("?")[0]] += 1
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.match in path:
                    fault.times -= 1
                    self.injected[fault.kind] += 1
                    return fault.kind
        return None

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        kind = self._fault(handler.command, handler.path)
        if kind == "stall":  # a store that takes the request and never answers
            self._closing.wait(60)
            handler.close_connection = True
            return
        if kind == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind in ("503", "429"):
            payload = _UNAVAILABLE if kind == "503" else _SLOW_DOWN
            handler.send_response(int(kind))
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            reply = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
            status = response.status
        finally:
            upstream.close()
        declared = len(data)
        if kind in ("cut", "short") and len(data) > 1:
            data = data[: len(data) // 2]
            if kind == "short":
                declared = len(data)
        elif kind == "flip" and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        handler.send_response(status)
        for key, value in reply:
            if key.lower() != "content-length" or handler.command == "HEAD":
                handler.send_header(key, value)
        if handler.command != "HEAD":
            handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
        if kind == "cut":
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


@dataclass
class S3:
    """The server of one test module: ``endpoint`` direct, ``proxy`` in front of it."""

    endpoint: str
    proxy: FaultProxy
    _names: Iterator[int] = field(default_factory=itertools.count)

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"bucket-{next(self._names)}"
        make_bucket(self.endpoint, name)
        return name

    def options(self, **extra: Any) -> dict[str, Any]:
        """storage_options through the proxy."""
        return options(self.proxy.endpoint, **extra)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    with moto_server() as endpoint, FaultProxy(endpoint) as proxy:
        yield S3(endpoint, proxy)
    # the proxy is closed before the server, and both before the next module starts its own


@pytest.fixture(autouse=False)
def clean_proxy(s3: S3) -> Iterator[FaultProxy]:
    s3.proxy.clear()
    yield s3.proxy
    s3.proxy.clear()


def samples(n: int, size: int = 256) -> list[dict[str, Any]]:
    """Samples that name their index in every field, so any mix-up shows."""
    return [
        {"x": np.full(size, i, np.int32), "name": f"sample {i}", "label": i % 7, "i": i}
        for i in range(n)
    ]


def check_sample(sample: Any, i: int, size: int = 256) -> None:
    assert sample["i"] == i
    assert sample["name"] == f"sample {i}"
    assert sample["label"] == i % 7
    np.testing.assert_array_equal(sample["x"], np.full(size, i, np.int32))


def check_batch(batch: Any, size: int = 256) -> list[int]:
    """Check every sample of a collated batch of ``samples``; returns their indices."""
    indices = [int(i) for i in batch["i"]]
    for row, i in enumerate(indices):
        check_sample({key: batch[key][row] for key in batch}, i, size)
    return indices
