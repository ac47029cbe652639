"""Server-wide hooks the in-memory tests configure by import path."""

from __future__ import annotations

from kext.admission import AdmissionRequest, Denied


def stamp(request: AdmissionRequest) -> None:
    """Mutating: labels what it admits with the operation and the user; warns."""
    request.warn(f"stamped by {request.user_info.name}")
    if request.object is not None:
        labels = request.object.setdefault("metadata", {}).setdefault("labels", {})
        labels["stamped"] = request.operation.lower()


def refuse_nope(request: AdmissionRequest) -> None:
    """Validating: refuses objects named nope, after a warning."""
    if request.name == "nope":
        request.warn("about to refuse")
        raise Denied("nope is not a name")


def explode(request: AdmissionRequest) -> None:
    raise RuntimeError("hook bug")
