"""What a pipeline task's interpreter imports before the kubelet forks it (``kubelet.ketch.dev/preload``).

Not imported by ketch itself (the leading underscore keeps component discovery away): it sets kfp's runtime
mode in the environment of the process that imports it.

Every task Pod runs ``python -m ketch.pipelines.launcher``; importing this module in the kubelet's warm
interpreter once means a task starts by fork, not by interpreter start-up plus these imports. kfp is
imported in its runtime mode (``_KFP_RUNTIME``), as the launcher itself imports it, so a component sees the
same kfp whether its process was forked or exec'd.
"""

import os

os.environ["_KFP_RUNTIME"] = "true"

import packaging.requirements  # noqa: E402,F401 - parsed for packages_to_install
from kfp.dsl import executor, utils  # noqa: E402,F401

import ketch.pipelines.launcher  # noqa: E402,F401
import ketch.pyenvs  # noqa: E402,F401
from ketch import storage  # noqa: E402

if storage.is_remote(storage.artifacts_url() or os.environ.get("KETCH_PIPELINE_ROOT")):
    # tasks stage artifacts through fsspec's implementation for the store (s3fs: aiobotocore, aiohttp), a
    # large import: done once here instead of in every task (the instances and their event loop are made
    # later, in the forked task)
    import contextlib

    with contextlib.suppress(ImportError):
        import fsspec

        fsspec.get_filesystem_class((storage.artifacts_url() or os.environ["KETCH_PIPELINE_ROOT"]).split("://", 1)[0])
