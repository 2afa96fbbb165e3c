"""A real S3 server on loopback for tests: moto's standalone server, no mocking of boto3.

`s3_endpoint` is one server for the whole session; `s3_settings` gives Settings pointing at
it with a fresh bucket, spool and SQLite index per test; `restartable_s3` is a server of the
test's own that can be stopped and started again on the same port (the outage test).
moto keeps its data per process, so buckets survive a restart like a real store's.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
from moto.server import ThreadedMotoServer

from yangyang_rec.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RestartableS3:
    port: int
    server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="session")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_process_endpoint():
    """moto in a process of its own, like a real store: for timing tests, where a server in this
    process would compete with the code under test for the GIL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server process did not start") from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def restartable_s3():
    s3 = RestartableS3(free_port())
    s3.start()
    yield s3
    s3.stop()


def settings_for(endpoint: str, tmp_path, **overrides) -> Settings:
    values = {
        "s3_endpoint_url": endpoint,
        "s3_bucket": "rec-" + uuid.uuid4().hex[:16],
        "s3_region": "ap-northeast-2",
        "s3_addressing_style": "path",
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
        "spool_dir": tmp_path / "spool",
        "database_url": f"sqlite:///{tmp_path / 'index.sqlite3'}",
        "multipart_threshold_mb": 5,
    }
    values.update(overrides)
    (values["spool_dir"]).mkdir(parents=True, exist_ok=True)
    return Settings(**values)


@pytest.fixture
def s3_settings(s3_endpoint, tmp_path) -> Settings:
    return settings_for(s3_endpoint, tmp_path)


class _LimitedStoreHandler(http.server.BaseHTTPRequestHandler):
    """Forwards to moto, but answers like a store without some features (older Ceph RGW, MinIO)."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    refuse: dict[str, tuple[int, str]]  # query sub-resource -> (status, S3 error code)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = self.path.partition("?")[2]
        for resource, (status, code) in self.refuse.items():
            if resource in query.split("&"):
                xml = f"<Error><Code>{code}</Code><Message>not supported here</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
                return
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers))
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def limited_store(s3_endpoint):
    """Factory: an endpoint in front of the session's moto that refuses the given sub-resources."""
    servers = []

    def start(refuse: dict[str, tuple[int, str]]) -> str:
        host, port = s3_endpoint.removeprefix("http://").split(":")
        handler = type("Handler", (_LimitedStoreHandler,), {"upstream": (host, int(port)), "refuse": refuse})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ready(s3_settings):
    """An open index and a bucket set up as `lifecycle --apply` leaves it: (settings, client)."""
    from yangyang_rec.bucket import apply_bucket_setup, make_client
    from yangyang_rec.index import open_index

    open_index(s3_settings.database_url)
    client = make_client(s3_settings)
    assert apply_bucket_setup(client, s3_settings).ok
    return s3_settings, client
