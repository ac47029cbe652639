"""Auditing (cf. k8s.io/apiserver pkg/audit): the policy that decides what is recorded, the
audit.k8s.io/v1 events, and the log they are written to. The request filter that records
them is kext.server.filters.with_audit."""

from kext.audit.event import (
    PANIC,
    REQUEST_RECEIVED,
    RESPONSE_COMPLETE,
    RESPONSE_STARTED,
    AuditEvent,
    redact_uri,
)
from kext.audit.log import AuditLog
from kext.audit.policy import Level, Policy, PolicyError, RequestAuditConfig, load_policy

__all__ = [
    "PANIC",
    "REQUEST_RECEIVED",
    "RESPONSE_COMPLETE",
    "RESPONSE_STARTED",
    "AuditEvent",
    "AuditLog",
    "Level",
    "Policy",
    "PolicyError",
    "RequestAuditConfig",
    "load_policy",
    "redact_uri",
]
