"""kext's client for kube-apiserver (TokenReview, SubjectAccessReview, the cluster's
ConfigMaps, webhook configurations, namespaces; `kext doctor`).

    access = from_settings(config.kubernetes)        # or load_kubeconfig(path), in_cluster()
    client = KubeClient(access)                      # on the running asyncio reactor
    review = await client.post("/apis/authentication.k8s.io/v1/tokenreviews", body,
                               idempotent=True, timeout=10)
    async with client.watch(path, resource_version) as events:
        async for event in events: ...
    informer = Informer(client, "/api/v1/namespaces"); informer.start()

See `client` for timeouts and retries, `informer` for list-and-watch semantics.
"""

from kext.kube.client import KubeClient, KubeResponse, WatchEvent, WatchStream
from kext.kube.config import (
    SERVICE_ACCOUNT_DIR,
    ClusterAccess,
    KubeConfigError,
    from_settings,
    in_cluster,
    kubeconfig_paths,
    load_kubeconfig,
)
from kext.kube.errors import KubeError, KubeStatusError, KubeTimeout, KubeUnavailable
from kext.kube.informer import Informer, Relisted, list_and_watch, list_collection, object_key

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "ClusterAccess",
    "Informer",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "KubeResponse",
    "KubeStatusError",
    "KubeTimeout",
    "KubeUnavailable",
    "Relisted",
    "WatchEvent",
    "WatchStream",
    "from_settings",
    "in_cluster",
    "kubeconfig_paths",
    "list_and_watch",
    "list_collection",
    "load_kubeconfig",
    "object_key",
]
