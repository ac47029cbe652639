"""Example server-wide admission hooks (`admission.hooks` in server.yaml; see
examples/admission-server.yaml). Each is called with one `kext.admission.AdmissionRequest` on
every create, update and delete of every resource kext serves.

    admission:
      hooks:
        - {hook: "examples.admission_hooks:record_creator", type: Mutating}
        - "examples.admission_hooks:frozen_objects"      # a validating hook, failing closed

Hooks may run twice on one write (when a mutating webhook asks to be called again, kube's
reinvocation): make them idempotent, as these are.
"""

from __future__ import annotations

from kext.admission import AdmissionRequest, Denied

CREATED_BY = "example.kext.io/created-by"
FROZEN = "example.kext.io/frozen"


def record_creator(request: AdmissionRequest) -> None:
    """Mutating: a new object is annotated with the name of the user who created it; a dry
    run is told that nothing was stored."""
    if request.dry_run:
        request.warn(f"dry run: {request.kind.kind} {request.name!r} was not stored")
    if request.operation != "CREATE" or request.object is None:
        return
    annotations = request.object.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[CREATED_BY] = request.user_info.name


def frozen_objects(request: AdmissionRequest) -> None:
    """Validating: an object labelled `example.kext.io/frozen: "true"` can be neither changed
    nor deleted, except to remove that label."""
    old = request.old_object
    if old is None or not _frozen(old):
        return
    if request.operation == "UPDATE" and request.object is not None and not _frozen(
            request.object):
        return  # unfreezing is allowed
    what = "deleted" if request.operation == "DELETE" else "changed"
    raise Denied(f"{request.kind.kind} {request.name!r} is frozen and cannot be {what}; "
                 f"remove the {FROZEN} label first", code=403, reason="Forbidden")


def _frozen(obj: dict[str, object]) -> bool:
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return isinstance(labels, dict) and labels.get(FROZEN) == "true"
