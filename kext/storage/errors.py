"""Storage errors. The registry interprets them as API Status errors (like k8s storeerr)."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the storage layer raises."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or f"{type(self).__name__}: {key}")
        self.key = key


class KeyNotFoundError(StorageError):
    """The key does not exist (or did not exist at the requested revision)."""


class KeyExistsError(StorageError):
    """Create found the key already present."""


class ResourceVersionConflictError(StorageError):
    """A precondition (resourceVersion or uid) did not match the stored object."""


class ExpiredError(StorageError):
    """The requested revision is compacted (or out of the watch cache's window): HTTP 410."""


class TooLargeResourceVersionError(StorageError):
    """The requested revision is ahead of what storage (or the cache) has seen."""

    def __init__(self, key: str, requested: int, current: int) -> None:
        super().__init__(
            key, f"Too large resource version: {requested}, current: {current}"
        )
        self.requested = requested
        self.current = current


class UnavailableError(StorageError):
    """etcd cannot be reached or did not answer in time."""


class RequestTooLargeError(StorageError):
    """etcd refused the request for its size (etcd's --max-request-bytes, 1.5 MiB by
    default): the object is too big to store, and nothing is wrong with etcd."""


class OutcomeUnknownError(UnavailableError):
    """A write was sent and its answer lost (the connection broke, or the deadline passed):
    etcd may or may not have applied it."""


class InvalidObjectError(StorageError):
    """What the request asked for is malformed (a continue token, a resourceVersion)."""


class CorruptObjectError(InvalidObjectError):
    """A stored value (or one about to be stored) is not a JSON object: the server's fault."""
