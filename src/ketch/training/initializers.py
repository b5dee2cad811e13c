"""Trainer v2's dataset and model initializers: ``python -m ketch.training.initializers dataset|model <dest>``.

What the ``dataset-initializer`` / ``model-initializer`` images of Kubeflow Trainer do, for the storage
ketch can reach: fetch ``STORAGE_URI`` into ``<dest>`` (``/workspace/dataset`` or ``/workspace/model`` on
the runtime's shared volume, reached through ketch's mount rewriting) before the trainer nodes start.

Schemes: a local path or ``file://`` (copied), ``http(s)://`` (one file, named after the URL's last
segment), ``s3://bucket/prefix`` (boto3; ``AWS_ENDPOINT_URL`` or ``S3_ENDPOINT`` for the endpoint, the
usual AWS credentials), ``hf://<repo>`` (``huggingface_hub.snapshot_download``, where that library and the
network are available). A failure prints one line saying what and why, and exits non-zero: the TrainJob
then fails with the initializer's reason. The copy goes to a temporary directory renamed into place,
so a half-fetched dataset never looks whole.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from urllib.parse import urlparse

from ketch import download

SCHEMES = ("", "file", "http", "https", "s3", "hf")


class InitError(Exception):
    pass


def _local(src: str, out: str) -> None:
    if not os.path.exists(src):
        raise InitError(f"{src} does not exist")
    if os.path.isdir(src):
        shutil.copytree(src, out, dirs_exist_ok=True, symlinks=True)
    else:
        shutil.copy2(src, os.path.join(out, os.path.basename(src)))


def _http(uri: str, out: str) -> None:
    try:
        download.http_file(uri, out, "download")
    except download.DownloadError as e:
        raise InitError(f"GET {uri}: {e}") from e


def _s3(uri: str, out: str) -> None:
    try:
        n = download.s3_prefix(uri, out)
    except ImportError as e:
        raise InitError("s3:// needs boto3 (pip install boto3)") from e
    if n == 0:
        raise InitError(f"no objects under {uri}")


def _hf(uri: str, out: str, kind: str) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise InitError("hf:// needs huggingface_hub (pip install huggingface_hub)") from e
    repo = uri[len("hf://"):].strip("/")
    snapshot_download(repo_id=repo, repo_type="dataset" if kind == "dataset" else "model", local_dir=out,
                      token=os.environ.get("HF_TOKEN") or os.environ.get("ACCESS_TOKEN") or None)


def fetch(kind: str, uri: str, dest: str) -> int:
    """Fetch ``uri`` into ``dest``; returns the number of files there."""
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise InitError(f"{parent} does not exist: mount the runtime's shared volume there")
    scheme = urlparse(uri).scheme if "://" in uri else ""
    if scheme not in SCHEMES:
        raise InitError(f"unsupported storageUri scheme {scheme!r}; ketch's {kind} initializer reads: local paths, file://, http(s)://, s3://, hf://")
    tmp = tempfile.mkdtemp(prefix=f".{kind}-", dir=parent)
    try:
        if scheme in ("", "file"):
            _local(uri[len("file://"):] if scheme == "file" else uri, tmp)
        elif scheme in ("http", "https"):
            _http(uri, tmp)
        elif scheme == "s3":
            _s3(uri, tmp)
        else:
            _hf(uri, tmp, kind)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sum(len(files) for _, _, files in os.walk(dest))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("dataset", "model"):
        print("usage: python -m ketch.training.initializers dataset|model <dest>", file=sys.stderr)
        return 2
    kind, dest = argv
    uri = os.environ.get("STORAGE_URI")
    if not uri:
        print(f"{kind} initializer: STORAGE_URI is not set (spec.initializer.{kind}.storageUri of the TrainJob)", file=sys.stderr)
        return 2
    try:
        n = fetch(kind, uri, dest)
    except InitError as e:
        print(f"{kind} initializer: cannot fetch {uri}: {e}", file=sys.stderr)
        return 1
    print(f"{kind} initializer: {uri} -> {dest} ({n} files)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
