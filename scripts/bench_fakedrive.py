#!/usr/bin/env python3
"""Measure how many simple requests per second the fake Google Drive serves on this machine.

The fake must not be what limits drivemr's benchmarks (target: >= 1000 requests/s on two
cores, no latency injected). Several client processes each hold one HTTP/1.1 keep-alive
connection and call ``files.get`` (metadata) in a loop; in the same run, a trivial stdlib
keep-alive server that answers ``{}`` gives the ceiling this machine and ``http.server``
allow, so the figure can be read against it. ``--googleapiclient`` also measures through
the real google-api-python-client (whose own overhead then dominates).

    python scripts/bench_fakedrive.py [--seconds 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from drivemr.testing.fakedrive import FakeDriveServer, build_client


class _Trivial(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b"{}"
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n" + body
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TrivialServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def _raw_client(port: int, path: str, seconds: float, start: Any, out: Any) -> None:
    """One keep-alive connection, as httplib2 uses it, hammering one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"accept": "application/json", "accept-encoding": "gzip, deflate"}
    start.wait()
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"unexpected status {resp.status}")
        n += 1
    out.put(n)


def _api_client(url: str, file_id: str, seconds: float, start: Any, out: Any) -> None:
    files = build_client(url).files()  # drive.files() rebuilds every method: keep one
    start.wait()
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        files.get(fileId=file_id, fields="id,name,size,md5Checksum").execute()
        n += 1
    out.put(n)


def _run(target: Any, args: tuple[Any, ...], clients: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, seconds, start, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let the interpreters start before the clock runs
    start.set()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--googleapiclient", action="store_true", help="also measure via the client")
    ap.add_argument("--target", type=float, default=1000.0)
    args = ap.parse_args(argv)

    trivial = _TrivialServer(("127.0.0.1", 0), _Trivial)
    threading.Thread(target=trivial.serve_forever, daemon=True).start()
    base = _run(_raw_client, (trivial.server_address[1], "/"), args.clients, args.seconds)
    trivial.shutdown()
    trivial.server_close()

    results: dict[str, float] = {"baseline_trivial_http_server": base}
    with FakeDriveServer() as srv:
        drive = build_client(srv.url)
        fid = drive.files().create(body={"name": "bench.txt"}, fields="id").execute()["id"]
        path = f"/drive/v3/files/{fid}?fields=id%2Cname%2Csize%2Cmd5Checksum&alt=json"
        srv.reset_stats()
        rate = _run(_raw_client, (srv.port, path), args.clients, args.seconds)
        results["fakedrive_files_get"] = rate
        stats = srv.stats()
        if stats["by_status"].get("200", 0) != stats["requests"]:
            print(f"unexpected answers: {stats['by_status']}", file=sys.stderr)
            return 2
        if args.googleapiclient:
            results["fakedrive_files_get_via_googleapiclient"] = _run(
                _api_client, (srv.url, fid), args.clients, args.seconds
            )

    print(json.dumps({k: round(v) for k, v in results.items()}, indent=2))
    print(
        f"fake Google Drive: {rate:.0f} files.get requests/s "
        f"({args.clients} keep-alive clients, {rate / base:.0%} of a trivial stdlib server "
        f"at {base:.0f}/s); target {args.target:.0f}/s: {'OK' if rate >= args.target else 'LOW'}"
    )
    return 0 if rate >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
