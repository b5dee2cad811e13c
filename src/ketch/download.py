"""Copying an ``s3://bucket/prefix`` or an ``http(s)://`` file into a local directory: the part of a
storage URI fetch that the model server's storage initializer (``ketch.serving.modelserver.storage``) and
Trainer's dataset and model initializers (``ketch.training.initializers``) share.

Why a module of its own at the package's top: serving and training are sibling layers that may not import
each other, and both call this from inside a Pod's process, so it must stay light (standard library at
import time; boto3 and httpx only when a URI of theirs is fetched), as ``ketch.pyenvs`` is. Each caller
keeps its own words for a failure (the initializer's one-line reason, the model server's
``storageUri ...`` message) and its own policy (archives unpacked or not, temporary directory, marker).

S3 as the AWS SDK and KServe configure it (``ketch.storage.endpoint_url``): the endpoint from
``AWS_ENDPOINT_URL`` or ``S3_ENDPOINT`` (a bare ``host:port`` gets ``https://`` unless ``S3_USE_HTTPS=0``),
the region from ``AWS_DEFAULT_REGION`` (``us-east-1`` by default), credentials from the usual AWS variables
and files.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse


class DownloadError(RuntimeError):
    """A download that could not be done; the message names what failed (an HTTP status, a network error)."""


def s3_client():
    """A boto3 S3 client configured from the environment (ImportError without boto3)."""
    import boto3

    from ketch import storage

    return boto3.client("s3", endpoint_url=storage.endpoint_url(), region_name=storage.region() or "us-east-1")


def s3_prefix(uri: str, out: str) -> int:
    """Download every object under ``s3://bucket/prefix`` into ``out``, keeping the key's path below the
    prefix (an object whose key is the prefix itself lands under its base name); returns how many objects
    were written. "models/a" does not take "models/ab/...": a key must lie at or below the prefix's path."""
    u = urlparse(uri)
    bucket, prefix = u.netloc, u.path.lstrip("/")
    s3 = s3_client()
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = os.path.relpath(key, prefix) if prefix and key != prefix else os.path.basename(key)
            if key.endswith("/") or rel.startswith(".."):
                continue
            target = os.path.join(out, rel)
            os.makedirs(os.path.dirname(target) or out, exist_ok=True)
            s3.download_file(bucket, key, target)
            n += 1
    return n


def http_file(uri: str, out: str, default_name: str) -> str:
    """Stream one ``http(s)://`` file into ``out`` under the URL's last path segment (``default_name`` when
    there is none), following redirects; returns its path. Raises DownloadError on a status other than 200
    or a transport error."""
    import httpx

    target = os.path.join(out, os.path.basename(urlparse(uri).path) or default_name)
    try:
        with httpx.stream("GET", uri, follow_redirects=True, timeout=60) as r:
            if r.status_code != 200:
                raise DownloadError(f"HTTP {r.status_code}")
            with open(target, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise DownloadError(str(e)) from e
    return target
