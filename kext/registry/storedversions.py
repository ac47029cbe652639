"""Which versions a resource's objects are stored in: kext's `status.storedVersions`
(cf. apiextensions-apiserver, which keeps that list in the CRD's status and refuses to drop a
version from spec.versions while it is listed there).

kext has no CRD objects to keep a status in, so it keeps the list in etcd, beside the objects:
`<prefix>/kext.io/storedversions/<plural>.<group>`, a JSON object

    {"kind": "StoredVersions", "apiVersion": "kext.io/v1alpha1",
     "metadata": {"name": "<plural>.<group>"}, "storedVersions": ["v1alpha1", "v1"]}

updated at every start-up, once the watch cache holds every object: the versions objects are
found stored in, then the storage version (kept in the order they were first recorded). So
after the storage version changes, the old version stays listed until no object is stored in
it any more (each write stores an object again in the storage version; rewriting every object
is the migration), and kext refuses to start while objects are stored in a version that
spec.versions no longer lists, since they could not be read.
"""

from __future__ import annotations

from kext.api.resource import ResourceDefinition
from kext.storage import errors as storage_errors
from kext.storage.interface import Interface, ListOptions, Object

KIND = "StoredVersions"
API_VERSION = "kext.io/v1alpha1"


class StoredVersionsError(Exception):
    """Objects are stored in versions the definition no longer lists."""


def stored_versions_key(prefix: str, definition: ResourceDefinition) -> str:
    return f"{prefix.rstrip('/')}/kext.io/storedversions/{definition.name}"


async def found_versions(cache: Interface, root: str, group: str) -> dict[str, int]:
    """How many objects under root are stored in each version (read from the watch cache)."""
    listed = await cache.list(root, ListOptions(resource_version="0"))
    counts: dict[str, int] = {}
    for obj in listed.items:
        api_version = str(obj.get("apiVersion", ""))
        version = api_version.removeprefix(f"{group}/")
        counts[version] = counts.get(version, 0) + 1
    return counts


async def update_stored_versions(storage: Interface, cache: Interface, prefix: str, root: str,
                                 definition: ResourceDefinition) -> list[str]:
    """Check that every version objects are stored in is still declared, and record the
    stored versions (see the module docstring); returns them."""
    found = await found_versions(cache, root, definition.group)
    declared = {v.name for v in definition.versions}
    storage_version = definition.storage_version.name
    lost = {v: n for v, n in found.items() if v not in declared}
    if lost:
        listed = ", ".join(f"{n} as {definition.group}/{v}" for v, n in sorted(lost.items()))
        raise StoredVersionsError(
            f"{definition.name}: objects are stored in versions spec.versions no longer lists "
            f"({listed}): list those versions again (served: false is enough) so they stay "
            f"readable until every object is stored again as {storage_version}")
    key = stored_versions_key(prefix, definition)

    async def record(current: Object | None) -> Object:
        recorded = (current or {}).get("storedVersions") or []
        versions = [v for v in recorded if isinstance(v, str) and (v in found
                                                                   or v == storage_version)]
        versions += [v for v in sorted(found) if v not in versions]
        if storage_version not in versions:
            versions.append(storage_version)
        return {"kind": KIND, "apiVersion": API_VERSION,
                "metadata": {"name": definition.name}, "storedVersions": versions}

    try:
        stored = await storage.guaranteed_update(key, record, ignore_not_found=True)
    except storage_errors.StorageError as exc:
        raise StoredVersionsError(f"{definition.name}: cannot record its stored versions at "
                                  f"{key}: {exc}") from None
    return list(stored["storedVersions"])
