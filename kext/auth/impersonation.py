"""Impersonation: a request that carries Impersonate-User (and optionally Impersonate-Group,
Impersonate-Uid, Impersonate-Extra-<key>) runs as that user, if its caller may impersonate
each of them (cf. apiserver pkg/endpoints/filters/impersonation).

Each thing asked for is authorized for the caller with the verb `impersonate`, one check
each: `users` (or `serviceaccounts` in the account's namespace, for
system:serviceaccount:<ns>:<name>) and `groups` in the core group, `uids` and
`userextras/<key>` in authentication.k8s.io. The impersonated user gets system:authenticated
(system:unauthenticated for system:anonymous) unless the groups asked for already decide;
a service account without groups asked for gets its own groups. Groups, a uid or extras
without a user are a bad request."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kext.auth.authentication import unescape_extra_key
from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.auth.user import ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, UserInfo

log = logging.getLogger(__name__)

USER_HEADER = "impersonate-user"
GROUP_HEADER = "impersonate-group"
UID_HEADER = "impersonate-uid"
EXTRA_PREFIX = "impersonate-extra-"
AUTHENTICATION_V1 = "authentication.k8s.io/v1"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Impersonated:
    """One thing a request asks to act as (kube's ObjectReference for it)."""

    kind: str  # User, ServiceAccount, Group, UserExtra or UID
    name: str
    namespace: str = ""
    api_version: str = ""
    field_path: str = ""  # the extra key, for UserExtra

    def __str__(self) -> str:
        # Go's %v of an ObjectReference (Kind Namespace Name UID APIVersion ResourceVersion
        # FieldPath), as kube's bad-request message prints it.
        fields = (self.kind, self.namespace, self.name, "", self.api_version, "",
                  self.field_path)
        return "{" + " ".join(fields) + "}"


class ImpersonationError(Exception):
    """The Impersonate-* headers ask for something that cannot be (a bad request)."""


class ImpersonationForbidden(Exception):
    """The caller may not impersonate what `attributes` names."""

    def __init__(self, attributes: Attributes, reason: str) -> None:
        super().__init__(reason)
        self.attributes = attributes
        self.reason = reason


def is_impersonation_header(name: str) -> bool:
    """Whether a (lowercase) header name is one of the Impersonate-* headers."""
    return name in (USER_HEADER, GROUP_HEADER, UID_HEADER) or name.startswith(EXTRA_PREFIX)


def requested(headers: Sequence[tuple[str, str]]) -> list[Impersonated]:
    """What the headers ask to act as, in kube's order (user, groups, extras, uid); raises
    ImpersonationError for groups, extras or a uid without a user."""
    wanted: list[Impersonated] = []
    user = next((v for k, v in headers if k == USER_HEADER), "")
    if user:
        account = split_service_account(user)
        wanted.append(Impersonated("ServiceAccount", account[1], account[0]) if account
                      else Impersonated("User", user))
    groups = [Impersonated("Group", v) for k, v in headers if k == GROUP_HEADER]
    extras = [Impersonated("UserExtra", v, api_version=AUTHENTICATION_V1,
                           field_path=unescape_extra_key(k[len(EXTRA_PREFIX):]))
              for k, v in headers if k.startswith(EXTRA_PREFIX)]
    wanted += groups + extras
    uid = next((v for k, v in headers if k == UID_HEADER), "")
    if uid:
        wanted.append(Impersonated("UID", uid, api_version=AUTHENTICATION_V1))
    if (groups or extras or uid) and not user:
        raise ImpersonationError(
            f"requested [{' '.join(map(str, wanted))}] without impersonating a user")
    return wanted


def split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of a system:serviceaccount:<ns>:<name> user name, else None."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    parts = username[len(SERVICE_ACCOUNT_PREFIX):].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        return None
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return None
    return namespace, name


def _attributes(requestor: UserInfo, wanted: Impersonated) -> Attributes:
    group, _, version = wanted.api_version.rpartition("/")
    resource, subresource = {
        "User": ("users", ""), "ServiceAccount": ("serviceaccounts", ""),
        "Group": ("groups", ""), "UserExtra": ("userextras", wanted.field_path),
        "UID": ("uids", ""),
    }[wanted.kind]
    return Attributes(user=requestor, verb="impersonate", is_resource_request=True, path="",
                      namespace=wanted.namespace, api_group=group, api_version=version,
                      resource=resource, subresource=subresource, name=wanted.name)


async def impersonate(requestor: UserInfo, headers: Sequence[tuple[str, str]],
                      authorizer: Authorizer) -> UserInfo | None:
    """The user the request runs as, if its headers ask to impersonate (None if they do
    not). Raises ImpersonationError (400) or ImpersonationForbidden (403)."""
    wanted = requested(headers)
    if not wanted:
        return None
    groups_given = any(w.kind == "Group" for w in wanted)
    name, uid = "", ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for item in wanted:
        attributes = _attributes(requestor, item)
        try:
            decision, reason = await authorizer.authorize(attributes)
        except Exception as error:
            # As kube: an authorizer that cannot decide is a refusal here, not a 500.
            log.warning("impersonation by %s not authorized: %s", requestor.name, error)
            decision, reason = Decision.NO_OPINION, ""
        if decision is not Decision.ALLOW:
            raise ImpersonationForbidden(attributes, reason)
        if item.kind == "ServiceAccount":
            name = f"{SERVICE_ACCOUNT_PREFIX}{item.namespace}:{item.name}"
            if not groups_given:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{item.namespace}"]
        elif item.kind == "User":
            name = item.name
        elif item.kind == "Group":
            groups.append(item.name)
        elif item.kind == "UserExtra":
            extra.setdefault(item.field_path, []).append(item.name)
        else:
            uid = item.name
    if name != ANONYMOUS:
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    user = UserInfo(name, tuple(groups), uid, {k: tuple(v) for k, v in extra.items()})
    log.debug("%s is impersonating %s%s", requestor.name, user.name, list(user.groups))
    return user


def without_impersonation_headers(
        headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if not is_impersonation_header(k)]
