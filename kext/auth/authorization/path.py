"""Allow non-resource requests to the always-allowed paths, for anyone (cf. apiserver
pkg/authorization/path)."""

from __future__ import annotations

from kext.auth.authorization.authorizer import Attributes, Decision
from kext.auth.paths import AllowedPaths


class PathAuthorizer:
    """Allow on `authorization.alwaysAllowPaths`; no opinion on anything else (resource
    requests included, whatever their path)."""

    def __init__(self, paths: AllowedPaths) -> None:
        self.paths = paths

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        if not attributes.is_resource_request and self.paths.matches(attributes.path):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""
