"""Shared storage by URL: where pipeline artifacts and archived Pod logs live when the cluster has more than
one machine (``KETCH_ARTIFACTS=s3://bucket/prefix``, or any fsspec URL; unset: under ``KETCH_HOME``).

Why a module of its own at the package's top: the pipelines controller, the launcher inside a task's Pod, the
kubelet (log archive), the model server's Pods and the dashboard's artifact reader all need the same answer
to "which store, which endpoint, which credentials", and they sit in layers that may not import each other.
Like ``ketch.download`` it stays light: standard library at import time, fsspec only when a store is used.

The S3 endpoint is the AWS SDK's: ``KETCH_S3_ENDPOINT_URL`` (ketch's own name, which wins), else
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` or KServe's ``S3_ENDPOINT`` (a bare ``host:port`` gets
``https://`` unless ``S3_USE_HTTPS=0``). Pods get it as ``AWS_ENDPOINT_URL`` (``KETCH_*`` variables are
not passed to Pods), and the credentials from ketch's own environment through a Secret in their namespace
(``SECRET``), as KFP gives task Pods its ``mlpipeline-minio-artifact`` Secret.
"""

from __future__ import annotations

import os
from typing import Any

ENV = "KETCH_ARTIFACTS"
ENDPOINT_ENV = "KETCH_S3_ENDPOINT_URL"
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET = "ketch-artifact-store"  # the Secret (per namespace) that carries CREDENTIALS into Pods
EXTRAS = {"s3": "s3", "s3a": "s3", "minio": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "hf": "hf"}


def artifacts_url() -> str | None:
    """``KETCH_ARTIFACTS`` as given (trailing ``/`` dropped); None when unset (everything under the home)."""
    return (os.environ.get(ENV) or "").strip().rstrip("/") or None


def is_remote(uri: str | None) -> bool:
    """Whether ``uri`` names an object store or other fsspec filesystem rather than a local path."""
    return bool(uri) and "://" in str(uri) and not str(uri).startswith("file://")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def endpoint_url() -> str | None:
    """The S3 endpoint ketch and its Pods use (None: AWS's own)."""
    ep = next((os.environ[k] for k in (ENDPOINT_ENV, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT") if os.environ.get(k)), None)
    if ep and "://" not in ep:
        ep = ("https://" if os.environ.get("S3_USE_HTTPS", "1") != "0" else "http://") + ep
    return ep


def region() -> str | None:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for ``uri``: the S3 endpoint and region from the environment for ``s3://``."""
    proto = uri.split("://", 1)[0] if "://" in uri else ""
    if proto not in ("s3", "s3a", "minio"):
        return {}
    kw: dict[str, Any] = {}
    if endpoint_url():
        kw["endpoint_url"] = endpoint_url()
    if region():
        kw["region_name"] = region()
    return {"client_kwargs": kw} if kw else {}


def filesystem(uri: str, listings_cache: bool = True) -> tuple[Any, str]:
    """(fsspec filesystem, path in it) for ``uri`` with this environment's options. A long-lived process that
    reads what Pods write (ketch itself) passes ``listings_cache=False``, so a listing made before an object
    was written is not answered from s3fs's cache."""
    import fsspec

    if uri.startswith("minio://"):  # KFP's name for its MinIO store: S3 at the configured endpoint
        uri = "s3://" + uri[len("minio://"):]
    opts = storage_options(uri)
    if not listings_cache and is_remote(uri):
        opts["use_listings_cache"] = False
    return fsspec.core.url_to_fs(uri, **opts)


def unavailable(uri: str) -> str | None:
    """Why ``uri``'s filesystem cannot be used here (its library is missing, an unknown scheme), or None."""
    if not is_remote(uri):
        return None
    import importlib.util

    from fsspec.registry import known_implementations, registry

    proto = uri.split("://", 1)[0].replace("minio", "s3")
    if proto in registry:
        return None
    impl = known_implementations.get(proto)
    if impl is None:
        return f"{uri}: unknown scheme {proto}://"
    module = impl["class"].split(".", 1)[0]
    if importlib.util.find_spec(module) is not None:
        return None
    extra = EXTRAS.get(proto)
    how = f"pip install 'ketch[{extra}]'" if extra else f"pip install {module}"
    return f"{uri}: the {proto}:// scheme needs the {module} library, which is not installed: {how}"


def credentials() -> dict[str, str]:
    """The AWS credentials in this process's environment (what the ``SECRET`` holds)."""
    return {k: os.environ[k] for k in CREDENTIALS if os.environ.get(k)}


def pod_env(with_credentials: bool = True) -> list[dict]:
    """Env entries that let a Pod reach the store as ketch does: the endpoint and region as values, the
    credentials from the namespace's ``SECRET`` (optional keys: a Pod without them uses its own chain)."""
    env: list[dict] = []
    if endpoint_url():
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint_url()})
    if region():
        env.append({"name": "AWS_DEFAULT_REGION", "value": region()})
    if with_credentials:
        for k in credentials():
            env.append({"name": k, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": k, "optional": True}}})
    return env


class Secrets:
    """Keeps the ``SECRET`` in each namespace that a controller starts store-reaching Pods in equal to ketch's
    own credentials: made or refreshed once per namespace and controller life, so they never appear in a
    Pod's spec (the Pod's env names the Secret's keys). ``client`` is the controller's in-process client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.written: dict[str, dict[str, str]] = {}  # namespace -> credentials last written there

    def pod_env(self, ns: str) -> list[dict]:
        """``pod_env()`` for a Pod in ``ns``, its Secret made first."""
        import base64

        creds = credentials()
        if creds and self.written.get(ns) != creds:
            data = {k: base64.b64encode(v.encode()).decode() for k, v in creds.items()}
            cur = self.client.get(("v1", "Secret"), ns, SECRET)
            try:
                if cur is None:
                    self.client.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
                                        "metadata": {"name": SECRET, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "ketch"}}}, ns)
                elif cur.get("data") != data:
                    self.client.update({**cur, "data": data})
                self.written[ns] = creds
            except Exception as e:
                if getattr(e, "code", None) != 409:  # 409: made or changed meanwhile; the next Pod looks again
                    raise
        return pod_env()


def log_uri(root: str, namespace: str, pod: str, uid: str, container: str, restart: int | None = None) -> str:
    """Where one container run's log is archived: ``<root>/<ns>/<pod>/<uid>/<container>/<restart>.log`` (the
    uid keeps a later Pod of the same name from showing an earlier one's logs)."""
    u = join(root, namespace, pod, uid, container)
    return u if restart is None else f"{u}/{restart}.log"
