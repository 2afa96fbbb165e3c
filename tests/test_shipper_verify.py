"""How the shipper confirms what landed: from the PUT's own reply when the store echoes the SHA-256 it
checked, otherwise with a HEAD. A recording proxy in front of moto counts the requests and can answer like
a store that does not echo checksums."""

import hashlib
import http.client
import http.server
import threading
from pathlib import Path

import pytest

from tests.call_rows import make_call
from tests.s3_fixtures import settings_for
from yangyang_rec.bucket import apply_bucket_setup, make_client
from yangyang_rec.index import Call, open_index
from yangyang_rec.shipper import Shipper


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    seen: list[str]
    opaque_etag: bool

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(self.command + ("?" + self.path.partition("?")[2] if "?" in self.path else ""))
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers))
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() in ("transfer-encoding", "connection", "server", "date"):
                continue
            if name.lower() == "content-length" and self.command != "HEAD":
                continue
            if self.opaque_etag and "partNumber=" not in self.path:
                if name.lower().startswith("x-amz-checksum-") and self.command == "PUT":
                    continue  # a store that does not echo the checksum it was sent
                if name.lower() == "etag":
                    value = '"0123456789abcdef0123456789abcdef"'
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def proxied(s3_endpoint, tmp_path):
    """Factory: (settings, client, requests seen) through a proxy; opaque_etag drops the checksum a PUT
    reply echoes and makes every ETag an opaque value."""
    servers = []

    def start(opaque_etag: bool):
        host, port = s3_endpoint.removeprefix("http://").split(":")
        seen: list[str] = []
        handler = type("Handler", (_RecordingProxy,), {"upstream": (host, int(port)), "seen": seen,
                                                       "opaque_etag": opaque_etag})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        settings = settings_for(f"http://127.0.0.1:{server.server_address[1]}", tmp_path)
        open_index(settings.database_url)
        client = make_client(settings)
        assert apply_bucket_setup(client, settings).ok
        seen.clear()
        return settings, client, seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_single_put_whose_reply_echoes_its_sha256_needs_no_head(proxied):
    settings, client, seen = proxied(opaque_etag=False)
    rows = [make_call(settings, size=1000 + i) for i in range(3)]
    md5s = {r.id: hashlib.md5(Path(r.recording_path).read_bytes()).hexdigest() for r in rows}
    result = Shipper(settings, client).drain_once()
    assert (result.uploaded, result.failed) == (3, 0)
    assert [m for m in seen if m.startswith(("PUT", "HEAD"))] == ["PUT"] * 3
    for row in rows:
        row = Call.get_by_id(row.id)
        assert row.upload_state == "uploaded" and row.etag == md5s[row.id] and row.version_id
        head = client.head_object(Bucket=settings.s3_bucket, Key=row.key)
        assert head["ContentLength"] == row.bytes and head["Metadata"]["sha256"] == row.sha256


def test_a_reply_that_does_not_vouch_for_the_bytes_is_checked_with_a_head(proxied):
    settings, client, seen = proxied(opaque_etag=True)
    rows = [make_call(settings, size=2000), make_call(settings, size=6 * 1024 * 1024)]  # one PUT, one multipart
    result = Shipper(settings, client).drain_once()
    assert (result.uploaded, result.failed) == (2, 0)
    assert sum(1 for m in seen if m == "HEAD") == 2, seen
    for row in rows:
        row = Call.get_by_id(row.id)
        assert row.upload_state == "uploaded" and row.etag == "0123456789abcdef0123456789abcdef"


def test_a_multipart_upload_is_always_checked_with_a_head(proxied):
    settings, client, seen = proxied(opaque_etag=False)
    make_call(settings, size=6 * 1024 * 1024)
    assert Shipper(settings, client).drain_once().uploaded == 1
    assert sum(1 for m in seen if m == "HEAD") == 1
    assert any(m.startswith("POST?uploads") for m in seen)
