"""The Status a client gets for each storage failure (kube's storeerr.InterpretXError and
NewStorageReadError): code, reason, message and the Retry-After a client should wait."""

from __future__ import annotations

import logging

import pytest

from kext.registry.storeerr import interpret
from kext.storage import errors

KEY = "/registry/example.kext.io/widgets/ns/w"


@pytest.mark.parametrize(("error", "code", "reason", "message", "retry_after"), [
    (errors.KeyNotFoundError(KEY), 404, "NotFound", 'widgets.example.kext.io "w" not found', 0),
    (errors.KeyExistsError(KEY), 409, "AlreadyExists",
     'widgets.example.kext.io "w" already exists', 0),
    (errors.ResourceVersionConflictError(KEY, "Precondition failed: UID in precondition: x"),
     409, "Conflict", 'Operation cannot be fulfilled on widgets.example.kext.io "w": '
     "Precondition failed: UID in precondition: x", 0),
    (errors.ExpiredError(KEY, "too old resource version: 3 (7)"), 410, "Expired",
     "too old resource version: 3 (7)", 0),
    (errors.TooLargeResourceVersionError(KEY, 90, 12), 504, "Timeout",
     "Timeout: Too large resource version: 90, current: 12", 1),
    (errors.CorruptObjectError(KEY, f"{KEY}: not a JSON object"), 500, "InternalError",
     "Internal error occurred: unable to transform or decode widgets.example.kext.io w", 0),
    (errors.InvalidObjectError(KEY, "invalid continue token"), 400, "BadRequest",
     "invalid continue token", 0),
    (errors.UnavailableError(KEY, "connection refused"), 503, "ServiceUnavailable",
     "storage is unavailable: connection refused", 2),
    (errors.StorageError(KEY, "something else"), 500, "InternalError",
     "Internal error occurred: something else", 0),
])
def test_each_storage_error_is_kubes_status(error: errors.StorageError, code: int, reason: str,
                                            message: str, retry_after: int) -> None:
    status = interpret(error, "example.kext.io", "widgets", "w")
    assert (status.code, status.reason, status.message) == (code, reason, message)
    assert status.retry_after_seconds == retry_after


def test_a_corrupt_object_keeps_its_key_in_the_servers_log(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kext.registry.storeerr"):
        status = interpret(errors.CorruptObjectError(KEY, f"{KEY}: not a JSON object"),
                           "example.kext.io", "widgets", "")
    assert status.message == ("Internal error occurred: unable to transform or decode "
                              "widgets.example.kext.io")
    assert KEY not in status.message
    assert any(KEY in r.getMessage() for r in caplog.records)


def test_too_large_names_its_cause() -> None:
    status = interpret(errors.TooLargeResourceVersionError(KEY, 90, 12), "example.kext.io",
                       "widgets", "w").status()
    assert status["details"]["causes"] == [
        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    assert status["details"]["retryAfterSeconds"] == 1
