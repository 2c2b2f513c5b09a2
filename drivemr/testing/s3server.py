"""A real S3 API server on loopback for tests, benchmarks and the chaos campaign.

moto's server mode (``moto[server]``, a test dependency; conditional creates answer 412 over
HTTP since 5.1) runs in a thread of this process, behind drivemr's counting, fault-injecting
:class:`~drivemr.testing.s3proxy.S3Proxy`. ``env`` holds what points boto3's standard chain
at it (endpoint and dummy credentials), for child processes; ``client()`` is an in-process
boto3 client that needs no environment.
"""

from __future__ import annotations

import logging
from typing import Any

from drivemr.testing.s3proxy import S3Proxy

BUCKET = "drivemr-test"


class LoopbackS3:
    """``LoopbackS3().start()`` ... ``.stop()``; one bucket, ``BUCKET``, is created."""

    def __init__(self, bucket: str = BUCKET) -> None:
        self.bucket = bucket
        self._server: Any = None
        self.proxy: S3Proxy | None = None
        self.env: dict[str, str] = {}

    def start(self) -> LoopbackS3:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.proxy = S3Proxy(f"http://{host}:{port}").start()
        self.env = {
            "AWS_ENDPOINT_URL": self.proxy.url,
            "AWS_ACCESS_KEY_ID": "drivemr-test",
            "AWS_SECRET_ACCESS_KEY": "drivemr-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=32),
        )

    def store(self, prefix: str, **options: Any) -> Any:
        """An in-process client of the store ``s3://BUCKET/prefix``, retries included
        (``options``: of :class:`~drivemr.stores.s3.RetryingS3Store`)."""
        from drivemr.stores.s3 import RetryingS3Store

        return RetryingS3Store(self.bucket, prefix, client=self.client(), **options)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self._server is not None:
            self._server.stop()
