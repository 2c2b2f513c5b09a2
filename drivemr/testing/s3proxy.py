"""A loopback HTTP proxy in front of an S3 API server: counts requests, injects faults.

Tests and benchmarks put it between drivemr and a real S3 server (moto's server mode) by
pointing ``AWS_ENDPOINT_URL`` at it. Every request is forwarded unchanged, except those a
fault rule matches. A rule can answer with an S3 error instead (``503 SlowDown``,
``409 ConditionalRequestConflict``, ...), forward the request and then lose the answer
(the connection is closed: the write happened, the client cannot know), or strip a header
(a service that ignores ``If-None-Match``). The request counts, by S3 operation, are what
``scripts/bench_s3.py`` reports: they cover every process that talks through the proxy.
"""

from __future__ import annotations

import collections
import http.client
import random
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "expect"})
WRITE_OPS = frozenset(
    {
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "CreateBucket",
    }
)


def operation(method: str, path: str) -> str:
    """The S3 operation of a path-style request (enough of them for drivemr's use)."""
    query = urlsplit(path).query
    params = {p.split("=", 1)[0] for p in query.split("&") if p}
    bucket_level = urlsplit(path).path.strip("/").count("/") == 0
    if method == "GET":
        if "list-type" in params or bucket_level:
            return "ListObjectsV2"
        return "GetObject"
    if method == "HEAD":
        return "HeadBucket" if bucket_level else "HeadObject"
    if method == "PUT":
        if "partNumber" in params:
            return "UploadPart"
        return "CreateBucket" if bucket_level else "PutObject"
    if method == "POST":
        if "delete" in params:
            return "DeleteObjects"
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return f"{method}?"


@dataclass
class Fault:
    """What to do with the next ``times`` requests of ``op`` whose path matches ``path``."""

    op: str
    path: str = ""
    times: int = 1
    status: int = 0
    code: str = ""
    lose_answer: bool = False
    strip_header: str = ""

    def matches(self, op: str, path: str) -> bool:
        return self.times > 0 and op == self.op and re.search(self.path, path) is not None


class S3Proxy:
    """``S3Proxy(upstream_url).start()``; ``.url`` is the endpoint to give boto3."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.faults: list[Fault] = []
        self.injected = 0
        self.fault_rate = 0.0
        self._random = random.Random(0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                op = operation(self.command, self.path)
                fault = proxy._take_fault(op, self.path)
                if fault is not None and fault.status:
                    self._answer_error(fault)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                if fault is not None and fault.strip_header:
                    headers = {
                        k: v for k, v in headers.items() if k.lower() != fault.strip_header.lower()
                    }
                if self.command in ("PUT", "POST") or body:
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                if fault is not None and fault.lose_answer:
                    self.close_connection = True  # the write happened; its answer is lost
                    return
                self.send_response_only(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _answer_error(self, fault: Fault) -> None:
                doc = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                    f"<Message>injected by the test proxy</Message></Error>"
                ).encode()
                self.send_response_only(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Date", self.date_time_string())
                self.send_header("Content-Length", str(len(doc)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(doc)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        # A killed worker's connections end in resets and broken pipes: expected, not news.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> S3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail(self, op: str, path: str = "", **how: Any) -> Fault:
        fault = Fault(op, path, **how)
        with self._lock:
            self.faults.append(fault)
        return fault

    def storm(self, rate: float, seed: int = 0) -> None:
        """From now on, a share ``rate`` of all requests meets a random fault: 503 SlowDown,
        500 InternalError, a lost answer to a write, or (on a create) 409
        ConditionalRequestConflict."""
        with self._lock:
            self.fault_rate = rate
            self._random = random.Random(seed)

    def _take_fault(self, op: str, path: str) -> Fault | None:
        with self._lock:
            self.counts[op] += 1
            for fault in self.faults:
                if fault.matches(op, path):
                    fault.times -= 1
                    self.injected += 1
                    return fault
            if self.fault_rate and self._random.random() < self.fault_rate:
                self.injected += 1
                kinds = [
                    Fault(op, status=503, code="SlowDown"),
                    Fault(op, status=500, code="InternalError"),
                ]
                if op in WRITE_OPS:
                    kinds.append(Fault(op, lose_answer=True))
                if op == "PutObject":
                    kinds.append(Fault(op, status=409, code="ConditionalRequestConflict"))
                return self._random.choice(kinds)
        return None

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.faults.clear()
            self.injected = 0
            self.fault_rate = 0.0

    def writes(self) -> int:
        with self._lock:
            return sum(n for op, n in self.counts.items() if op in WRITE_OPS)

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())
