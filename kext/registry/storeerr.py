"""Interpret storage errors as API Status errors (cf. apiserver pkg/storage/errors)."""

from __future__ import annotations

import logging

from kext.api import errors
from kext.storage import errors as storage_errors

log = logging.getLogger(__name__)


def interpret(exc: storage_errors.StorageError, group: str, resource: str,
              name: str) -> errors.StatusError:
    """The Status error a client sees for a storage failure on (group, resource, name)."""
    if isinstance(exc, storage_errors.KeyNotFoundError):
        return errors.not_found(group, resource, name)
    if isinstance(exc, storage_errors.KeyExistsError):
        return errors.already_exists(group, resource, name)
    if isinstance(exc, storage_errors.ResourceVersionConflictError):
        return errors.conflict(group, resource, name, str(exc) or MODIFIED)
    if isinstance(exc, storage_errors.ExpiredError):
        return errors.expired(str(exc))
    if isinstance(exc, storage_errors.TooLargeResourceVersionError):
        err = errors.timeout(
            f"Too large resource version: {exc.requested}, current: {exc.current}",
            retry_after_seconds=1,
        )
        err.causes.append(errors.Cause("ResourceVersionTooLarge", "Too large resource version"))
        return err
    if isinstance(exc, storage_errors.CorruptObjectError):
        # as kube's NewStorageReadError: the server's data, not the request, is at fault; the
        # etcd key stays in the server's log
        log.error("%s", exc)
        what = f"{resource}.{group} {name}" if name else f"{resource}.{group}"
        return errors.internal_error(f"unable to transform or decode {what}")
    if isinstance(exc, storage_errors.InvalidObjectError):
        return errors.bad_request(str(exc))
    if isinstance(exc, storage_errors.RequestTooLargeError):
        # kube answers etcd's refusal as it comes (ErrorToAPIStatus: 500, no reason): the
        # object is too big for etcd, which is up; no Retry-After, as a retry fails the same
        return errors.StatusError(500, "", str(exc))
    if isinstance(exc, storage_errors.OutcomeUnknownError):
        # kube answers a write whose answer was lost with the gRPC error itself (500, no
        # reason, no Retry-After): never 503, which clients read as "not applied" and retry
        log.warning("%s", exc)
        what = f"{resource}.{group} {name}" if name else f"the {resource}.{group}"
        return errors.StatusError(500, "", f"{exc}: get {what} to see whether it was")
    if isinstance(exc, storage_errors.UnavailableError):
        err = errors.service_unavailable(f"storage is unavailable: {exc}")
        err.retry_after_seconds = 2
        return err
    return errors.internal_error(str(exc))


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
