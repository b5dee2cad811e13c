"""Whether a ``storageUri``'s scheme can be fetched here, checked by the controller before a revision
starts: a missing library then shows in the InferenceService's status (which extra to install) instead
of only in a failed Pod's log.

Schemes the model server reads itself (local paths, ``file://``, ``pvc://``, ``http(s)://``,
``model-registry://``) need nothing; ``s3://`` needs boto3; any other scheme goes through fsspec, whose
registry names the library each protocol needs. ``oci://`` in KServe means a model in a container image
(modelcars), which ketch cannot run.
"""

from __future__ import annotations

import importlib
import importlib.util
from urllib.parse import urlparse

BUILTIN = ("", "file", "pvc", "http", "https", "model-registry")
EXTRAS = {"gcsfs": "gcs", "huggingface_hub": "hf", "adlfs": "azure", "boto3": "serving"}


def problem(uri: str) -> str | None:
    """None when ``uri`` can be fetched, else why not and what to install."""
    scheme = urlparse(uri).scheme if "://" in uri else ""
    if scheme in BUILTIN:
        return None
    if scheme == "oci":
        return (f"storageUri {uri}: oci:// (a model in a container image, KServe's modelcars) is not supported: ketch runs "
                "no container images; use a path, pvc://, s3://, gs://, hf:// or http(s)://")
    if scheme == "s3":
        module = "boto3"
    else:
        from fsspec.registry import known_implementations, registry

        if scheme in registry:
            return None
        impl = known_implementations.get(scheme)
        if impl is None:
            return f"storageUri {uri}: unknown scheme {scheme}://"
        module = impl["class"].split(".", 1)[0]
    importlib.invalidate_caches()  # a library installed since start-up counts
    if importlib.util.find_spec(module) is not None:
        return None
    extra = EXTRAS.get(module)
    how = f"pip install 'ketch[{extra}]' (or pip install {module.replace('_', '-')})" if extra else f"pip install {module}"
    return f"storageUri {uri}: the {scheme}:// scheme needs the {module} library, which is not installed: {how}"
