"""Admission: the chain every write passes (kext.admission.chain), server-wide Python hooks,
webhooks, and a resource's own hooks.

A server-wide hook (`admission.hooks` in server.yaml) is given one `AdmissionRequest` and
refuses by raising `Denied`:

    from kext.admission import AdmissionRequest, Denied

    def no_friday_deploys(request: AdmissionRequest) -> None:
        if request.operation == "CREATE" and is_friday():
            raise Denied("no new widgets on Fridays")
"""

from kext.admission.attributes import GroupVersionKind, GroupVersionResource
from kext.admission.request import AdmissionRequest, Denied
from kext.auth.user import UserInfo

__all__ = ["AdmissionRequest", "Denied", "GroupVersionKind", "GroupVersionResource", "UserInfo"]
