"""Downloader against a local http.server: hashes, resume after a cut connection, refusal, server down."""
from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lora_nlg.data import bpe_records as encoding
from lora_nlg.data import stage as data
from lora_nlg.download import DownloadError, download

RAW = Path(__file__).resolve().parent / "fixtures" / "data" / "raw"
BODY = bytes(range(256)) * 1000  # 256 kB, several chunks
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves server.files; honours `Range: bytes=N-`; can cut the first response of a path halfway."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range") and not server.ignore_range:
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in server.cut_once:
            server.cut_once.discard(self.path)
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection drop mid-body
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.requests, httpd.cut_once, httpd.ignore_range = {"/file.bin": BODY}, [], set(), False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_hash_and_size(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    assert download(f"{server.url}/file.bin", dest, BODY_SHA, len(BODY), progress=False) == BODY_SHA
    assert dest.read_bytes() == BODY and list(dest.parent.iterdir()) == [dest]


def test_cut_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.cut_once.add("/file.bin")
    dest = tmp_path / "file.bin"
    download(f"{server.url}/file.bin", dest, BODY_SHA, len(BODY), progress=False)
    assert dest.read_bytes() == BODY
    assert server.requests == [("/file.bin", None), ("/file.bin", f"bytes={len(BODY) // 2}-")]


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    server.cut_once.add("/file.bin")
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="partial file .* is kept and the next run resumes it"):
        download(f"{server.url}/file.bin", dest, BODY_SHA, len(BODY), retries=0, progress=False)
    assert not dest.exists() and (tmp_path / "file.bin.part").stat().st_size == len(BODY) // 2
    download(f"{server.url}/file.bin", dest, BODY_SHA, len(BODY), progress=False)
    assert dest.read_bytes() == BODY and not (tmp_path / "file.bin.part").exists()
    assert server.requests[-1] == ("/file.bin", f"bytes={len(BODY) // 2}-")


def test_complete_partial_file_is_finished_without_refetching(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(BODY)  # e.g. interrupted between the last byte and the rename
    download(f"{server.url}/file.bin", tmp_path / "file.bin", BODY_SHA, progress=False)
    assert (tmp_path / "file.bin").read_bytes() == BODY and server.requests == [("/file.bin", f"bytes={len(BODY)}-")]


def test_stale_partial_file_longer_than_the_server_file_is_replaced(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(BODY + b"stale tail")
    download(f"{server.url}/file.bin", tmp_path / "file.bin", BODY_SHA, progress=False)
    assert (tmp_path / "file.bin").read_bytes() == BODY
    assert server.requests == [("/file.bin", f"bytes={len(BODY) + 10}-"), ("/file.bin", None)]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"garbage that is not the start of the file")
    server.ignore_range = True
    download(f"{server.url}/file.bin", tmp_path / "file.bin", BODY_SHA, len(BODY), progress=False)
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_wrong_sha256_is_refused_and_nothing_is_left(server, tmp_path):
    with pytest.raises(DownloadError, match=f"sha256 mismatch \\(got {BODY_SHA}, expected 0{{64}}\\)"):
        download(f"{server.url}/file.bin", tmp_path / "file.bin", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_refused_and_nothing_is_left(server, tmp_path):
    with pytest.raises(DownloadError, match=f"server reports {len(BODY)} bytes but 10 are expected"):
        download(f"{server.url}/file.bin", tmp_path / "file.bin", None, 10, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_server_down_fails_fast_with_manual_instructions(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dest = tmp_path / "file.bin"
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        download(f"http://127.0.0.1:{port}/file.bin", dest, BODY_SHA, len(BODY), progress=False)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert f"cannot reach http://127.0.0.1:{port}/file.bin" in message and "Connection refused" in message
    assert f"save it as {dest} (sha256 {BODY_SHA}, {len(BODY)} bytes)" in message
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/missing.bin", tmp_path / "missing.bin", progress=False)
    assert len(server.requests) == 1 and list(tmp_path.iterdir()) == []


def test_unpinned_hash_is_printed_with_a_warning(server, tmp_path, capsys):
    assert download(f"{server.url}/file.bin", tmp_path / "file.bin", progress=False) == BODY_SHA
    err = capsys.readouterr().err
    assert err.startswith("warning: no sha256 pinned") and f"sha256 {BODY_SHA} (NOT verified" in err


def test_existing_file_is_checked_not_fetched(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(BODY)
    assert download(f"{server.url}/file.bin", dest, BODY_SHA, len(BODY), progress=False) == BODY_SHA
    dest.write_bytes(BODY[:-1] + b"x")
    with pytest.raises(DownloadError, match="exists but its sha256 is .* delete it to download it again"):
        download(f"{server.url}/file.bin", dest, BODY_SHA, progress=False)
    assert server.requests == []


def manifest_for(tmp_path: Path, url: str, pin: bool = True) -> Path:
    rows = []
    for split in ("train", "valid", "test"):
        content = (RAW / "e2e" / f"{split}.txt").read_bytes()
        sha = hashlib.sha256(content).hexdigest() if pin else "-"
        rows.append(f"e2e\tlora\t{split}\t{split}.txt\t{len(content)}\t{sha}\t{url}/e2e/{split}.txt")
    path = tmp_path / "manifest.tsv"
    path.write_text("# test manifest\ndataset\tsource\tsplit\tpath\tsize\tsha256\turl\n" + "\n".join(rows) + "\n")
    return path


def test_make_data_without_raw_dir_downloads_verifies_and_converts(server, tmp_path):
    for split in ("train", "valid", "test"):
        server.files[f"/e2e/{split}.txt"] = (RAW / "e2e" / f"{split}.txt").read_bytes()
    server.cut_once.add("/e2e/train.txt")
    out = tmp_path / "data"
    args = ["--dataset", "e2e", "--out-dir", str(out), "--manifest", str(manifest_for(tmp_path, server.url)),
            "--no-progress"]
    assert data.main(args) == 0
    for split in ("train", "valid", "test"):
        assert (out / "raw" / "e2e" / f"{split}.txt").read_bytes() == server.files[f"/e2e/{split}.txt"]
    assert len(encoding.load_jsonl(out / "e2e" / "test.jsonl")) == 3
    requests = len(server.requests)
    assert data.main(args) == 0 and len(server.requests) == requests  # verified copies are reused


def test_make_data_offline_says_how_to_supply_files(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--dataset", "e2e", "--splits", "test", "--out-dir", str(tmp_path / "data"), "--no-progress",
            "--manifest", str(manifest_for(tmp_path, f"http://127.0.0.1:{port}"))]
    assert data.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach http://127.0.0.1:{port}/e2e/test.txt")
    assert f"save it as {tmp_path / 'data' / 'raw' / 'e2e' / 'test.txt'}" in err and "RAW_DIR=" in err
