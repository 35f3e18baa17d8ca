"""Fetch the original GPT-2 weights from the Hugging Face hub into `checkpoints/pretrained/<name>/`.

The hub serves large files through Git LFS and announces each file's sha256 in the `X-Linked-Etag` header of
the `resolve` URL, so the download is verified against the hash the hub publishes. After download the
checkpoint is loaded once, strictly, so a truncated or mismatched file is caught here rather than in training.

    python -m lora_nlg.pretrained gpt2-medium [--root checkpoints/pretrained] [--endpoint https://huggingface.co]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from lora_nlg.download import DownloadError, download
from lora_nlg.model.architecture import PRESETS

HUB_ENDPOINT = os.environ.get("LORA_NLG_HUB_ENDPOINT", "https://huggingface.co")
HUB_REPOS = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
FILES = ("config.json", "model.safetensors")
DEFAULT_ROOT = Path("checkpoints/pretrained")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the hub's own headers sit on the first (302) response
        return None


def hub_url(name: str, filename: str, endpoint: str = HUB_ENDPOINT, revision: str = "main") -> str:
    return f"{endpoint.rstrip('/')}/{HUB_REPOS[name]}/resolve/{revision}/{filename}"


def published_sha256(url: str, timeout: float = 30.0) -> tuple[str | None, int | None]:
    """(sha256, size) the hub announces for an LFS file, or (None, None) for small non-LFS files."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "lora-nlg"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        response = opener.open(request, timeout=timeout)
        headers = response.headers
    except urllib.error.HTTPError as e:  # 302 arrives here because redirects are not followed
        if e.code not in (301, 302, 303, 307, 308):
            raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from e
        headers = e.headers
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot reach {url} ({getattr(e, 'reason', e)}): offline?") from e
    etag = (headers.get("X-Linked-Etag") or "").strip('"W/ ')
    size = headers.get("X-Linked-Size")
    sha = etag.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", etag) else None
    return sha, int(size) if size and size.isdigit() else None


def fetch_pretrained(name: str, root: str | Path = DEFAULT_ROOT, endpoint: str = HUB_ENDPOINT,
                     revision: str = "main") -> Path:
    """Download (or re-verify) config.json + model.safetensors of a GPT-2 size; returns the directory."""
    if name not in HUB_REPOS:
        raise ValueError(f"no hub checkpoint for {name!r}; choose from {sorted(HUB_REPOS)}")
    target = Path(root) / name
    for filename in FILES:
        url = hub_url(name, filename, endpoint, revision)
        dest = target / filename
        try:
            sha, size = (None, None) if dest.exists() and filename == "config.json" else published_sha256(url)
            download(url, dest, sha256=sha, size=size)
        except DownloadError as e:
            raise DownloadError(f"{e}\nPretrained GPT-2 '{name}' needs {url}\n  saved as {dest}. Without network "
                                f"access, copy config.json and model.safetensors of {HUB_REPOS[name]} into "
                                f"{target}/ (or pass PRETRAINED=<dir> to use another checkpoint).") from None
    from lora_nlg.model.gpt2 import GPT2
    model = GPT2.from_pretrained(target)  # strict: catches a checkpoint that does not match its config
    if model.config != PRESETS[name]:
        raise DownloadError(f"{target}: the downloaded model is {model.config}, not the {name} preset")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(HUB_REPOS))
    parser.add_argument("--root", default=str(DEFAULT_ROOT))
    parser.add_argument("--endpoint", default=HUB_ENDPOINT)
    parser.add_argument("--revision", default="main")
    args = parser.parse_args(argv)
    try:
        path = fetch_pretrained(args.name, args.root, args.endpoint, args.revision)
    except (DownloadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: verified checkpoint in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
