"""Pretrained-weight fetching against a local stand-in for the Hugging Face hub on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from lora_nlg.download import DownloadError
from lora_nlg.model import hub as pretrained


class FakeHub(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    announced: dict[str, str] = {}

    def log_message(self, *args):
        pass

    def _route(self, send_body: bool):
        if "/resolve/main/" in self.path:
            name = self.path.rsplit("/", 1)[1]
            if name not in self.files:
                self.send_error(404)
                return
            self.send_response(302)
            self.send_header("Location", f"/cdn/{name}")
            if name.endswith(".safetensors"):  # LFS files carry their sha256 and size
                self.send_header("X-Linked-Etag", f'"{self.announced[name]}"')
                self.send_header("X-Linked-Size", str(len(self.files[name])))
            self.end_headers()
            return
        name = self.path.rsplit("/", 1)[1]
        body = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_HEAD(self):
        self._route(False)

    def do_GET(self):
        self._route(True)


@pytest.fixture()
def hub(tiny_checkpoint, monkeypatch):
    files = {n: (tiny_checkpoint / n).read_bytes() for n in ("config.json", "model.safetensors")}
    FakeHub.files = files
    FakeHub.announced = {"model.safetensors": hashlib.sha256(files["model.safetensors"]).hexdigest()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(pretrained.HUB_REPOS, "tiny", "test-org/tiny")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_verifies_and_loads(hub, tmp_path):
    path = pretrained.fetch_pretrained("tiny", tmp_path, endpoint=hub)
    assert path == tmp_path / "tiny"
    assert (path / "model.safetensors").read_bytes() == FakeHub.files["model.safetensors"]
    # a second call re-verifies the files on disk instead of downloading
    assert pretrained.fetch_pretrained("tiny", tmp_path, endpoint=hub) == path


def test_hash_mismatch_leaves_nothing(hub, tmp_path):
    FakeHub.announced["model.safetensors"] = "0" * 64
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        pretrained.fetch_pretrained("tiny", tmp_path, endpoint=hub)
    assert not (tmp_path / "tiny" / "model.safetensors").exists()
    assert not list((tmp_path / "tiny").glob("*.part"))


def test_offline_names_url_and_target(tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        pretrained.fetch_pretrained("gpt2-medium", tmp_path, endpoint=f"http://127.0.0.1:{port}")
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/openai-community/gpt2-medium/resolve/main/config.json" in msg
    assert str(tmp_path / "gpt2-medium") in msg


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert pretrained.main(["gpt2", "--root", str(tmp_path), "--endpoint", "http://127.0.0.1:9"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot reach")
