"""Fetching a model from its ``storageUri`` into a local directory, once per revision.

Schemes, as KServe's storage initializer supports them: a local path or ``file://`` (used in place),
``pvc://<claim>/<path>`` (a PersistentVolumeClaim's directory under ketch's home), ``s3://`` (boto3;
endpoint from ``AWS_ENDPOINT_URL``/``S3_ENDPOINT``, credentials from the usual AWS variables), ``gs://``
and any other fsspec protocol (through fsspec, with its optional backend installed), and ``http(s)://``
(one file; ``.zip``/``.tar``/``.tar.gz`` archives are unpacked), and ``model-registry://<model>[/<version>]``
(KServe's model registry scheme: the version's model artifact URI, looked up in the Kubeflow Model Registry
API on ketch's port, ``KETCH_SERVER``, or at ``MODEL_REGISTRY_BASE_URL``; no version means the newest). A download goes to a temporary directory
renamed into place when complete, so a crash never leaves a half-fetched model that looks whole; a
``.ketch-fetched`` marker makes later replicas of the same revision reuse it. The caller then loads the
model, which is the verification: a predictor is ready only once its model loaded.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tarfile
import tempfile
import zipfile
from urllib.parse import urlparse

from ketch import download

MARKER = ".ketch-fetched"


def pvc_root() -> str:
    home = os.environ.get("KETCH_HOME") or os.path.expanduser("~/.ketch")
    return os.path.join(home, "volumes")


def resolve_local(uri: str) -> str | None:
    """The local directory or file a URI names without copying, or None when it must be fetched."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if "://" not in uri:
        return uri
    if uri.startswith("pvc://"):
        rest = uri[len("pvc://"):]
        claim, _, sub = rest.partition("/")
        base = os.environ.get("KETCH_PVC_ROOT") or pvc_root()
        return os.path.join(base, claim, sub)
    return None


def from_registry(uri: str) -> str:
    """The storage URI of the model artifact that ``model-registry://<model>[/<version>]`` names."""
    from urllib.parse import unquote

    import httpx

    path = uri[len("model-registry://"):].strip("/")
    model, _, version = path.partition("/")
    base = (os.environ.get("MODEL_REGISTRY_BASE_URL") or os.environ.get("KETCH_SERVER") or "http://127.0.0.1:8080").rstrip("/")
    api = f"{base}/api/model_registry/v1"
    from ketch.kinds.incluster import ssl_context_for
    from ketch.kinds.mounts import bearer

    with httpx.Client(timeout=30, headers=bearer(), verify=ssl_context_for(api) or True) as http:
        rm = http.get(f"{api}/registered_model", params={"name": unquote(model)})
        if rm.status_code != 200:
            raise FileNotFoundError(f"storageUri {uri}: no registered model {unquote(model)!r} in the model registry")
        rid = rm.json()["id"]
        if version:
            mv = http.get(f"{api}/model_version", params={"name": unquote(version), "parentResourceId": rid})
            if mv.status_code != 200:
                raise FileNotFoundError(f"storageUri {uri}: model {unquote(model)!r} has no version {unquote(version)!r}")
            vid = mv.json()["id"]
        else:
            items = http.get(f"{api}/registered_models/{rid}/versions", params={"orderBy": "CREATE_TIME", "sortOrder": "DESC", "pageSize": 1}).json()["items"]
            if not items:
                raise FileNotFoundError(f"storageUri {uri}: model {unquote(model)!r} has no versions")
            vid = items[0]["id"]
        arts = http.get(f"{api}/model_versions/{vid}/artifacts").json()["items"]
    found = next((a["uri"] for a in arts if a.get("artifactType", "model-artifact") == "model-artifact" and a.get("uri")), None)
    if found is None:
        raise FileNotFoundError(f"storageUri {uri}: the version has no model artifact with a URI")
    return found


def fetch(uri: str, dest: str) -> str:
    """Make the model at ``uri`` available locally; returns the path to load from."""
    if uri.startswith("model-registry://"):
        uri = from_registry(uri)
    local = resolve_local(uri)
    if local is not None:
        if not os.path.exists(local):
            raise FileNotFoundError(f"storageUri {uri}: {local} does not exist")
        return local
    os.makedirs(os.path.dirname(os.path.abspath(dest)) or ".", exist_ok=True)
    with open(os.path.abspath(dest) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # replicas of one revision fetch once
        if os.path.exists(os.path.join(dest, MARKER)):
            return dest
        tmp = tempfile.mkdtemp(prefix=".fetch-", dir=os.path.dirname(os.path.abspath(dest)))
        try:
            scheme = urlparse(uri).scheme
            if scheme == "s3":
                _s3(uri, tmp)
            elif scheme in ("http", "https"):
                _http(uri, tmp)
            else:
                _fsspec(uri, tmp)
            if not any(f != MARKER for f in os.listdir(tmp)):
                raise FileNotFoundError(f"storageUri {uri}: nothing found to download")
            open(os.path.join(tmp, MARKER), "w").close()
            if os.path.exists(dest):
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _s3(uri: str, out: str) -> None:
    if download.s3_prefix(uri, out) == 0:
        raise FileNotFoundError(f"storageUri {uri}: no objects under that prefix")
    _maybe_unpack(out)


def _http(uri: str, out: str) -> None:
    try:
        download.http_file(uri, out, "model")
    except download.DownloadError as e:
        raise RuntimeError(f"storageUri {uri}: {e}") from e
    _maybe_unpack(out)


def _fsspec(uri: str, out: str) -> None:
    from ketch.storage import filesystem

    fs, path = filesystem(uri)  # with this environment's endpoint and credentials, minio:// as KFP names it
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", out, recursive=True)
    else:
        fs.get(path, os.path.join(out, os.path.basename(path)))
    _maybe_unpack(out)


def _maybe_unpack(out: str) -> None:
    files = [f for f in os.listdir(out) if not f.startswith(".")]
    if len(files) != 1:
        return
    p = os.path.join(out, files[0])
    if p.endswith((".tar", ".tar.gz", ".tgz")):
        with tarfile.open(p) as t:
            t.extractall(out, filter="data")
        os.remove(p)
    elif p.endswith(".zip"):
        with zipfile.ZipFile(p) as z:
            for n in z.namelist():
                if os.path.isabs(n) or ".." in n.split("/"):
                    raise RuntimeError(f"unsafe path in archive: {n}")
            z.extractall(out)
        os.remove(p)
