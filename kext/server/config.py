"""Start-up in kube's steps (cf. k8s.io/apiserver pkg/server/config.go and sample-apiserver's
start.go): Options → Config → Complete → New → Run.

- Options: `kext.config.ServerConfig`, loaded and validated by kext.config.
- Config: `new_config(options, certificates, etcd)` applies the options, with what the
  process prepared (kext/server/process.py: serving certificates, the etcd to use), to what
  one API server is built from.
- Complete: `Config.complete()` derives the settings that follow from others.
- New and Run: `APIServer(completed)` in kext/server/app.py builds one server's own parts
  and serves.

Both configs are plain data: building a server from one never shares state with another
server built from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kext.api.resource import ResourceDefinition
from kext.auth.authentication import (
    AnonymousAuthenticator,
    Authenticator,
    RequestHeaderAuthenticator,
    UnionAuthenticator,
    X509Authenticator,
)
from kext.auth.authorization.authorizer import Authorizer
from kext.auth.authorization.builtin import AlwaysAllowAuthorizer, PrivilegedGroupsAuthorizer
from kext.auth.authorization.path import PathAuthorizer
from kext.auth.authorization.union import UnionAuthorizer
from kext.auth.paths import AllowedPaths
from kext.certs import load_certificates
from kext.config import AuthenticationConfig, AuthorizationConfig, ServerConfig
from kext.server.process import ServingCertificates
from kext.storage.settings import EtcdSettings


@dataclass(frozen=True)
class Config:
    """What one API server is built from (cf. genericapiserver.Config)."""

    serving: ServingCertificates
    etcd: EtcdSettings
    storage_prefix: str
    bookmark_interval: float  # seconds between a watcher's bookmarks (the watch caches')
    authentication: AuthenticationConfig
    authorization: AuthorizationConfig
    max_requests_inflight: int
    max_mutating_requests_inflight: int
    request_timeout_seconds: float
    max_request_body_bytes: int
    resources: tuple[ResourceDefinition, ...]

    def complete(self) -> CompletedConfig:
        """The config with what follows from it filled in (cf. Config.Complete)."""
        request_header_ca = self.authentication.request_header.client_ca_file
        return CompletedConfig(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(Config)},
            x509_client_ca_files=tuple(
                p for p in self.serving.client_ca_files if p != request_header_ca
            ),
            # With anonymous access off, requests without credentials are still anonymous on
            # the always-allowed paths, as kube's anonymous authenticator does with path
            # conditions: health probes carry no credentials.
            anonymous_paths=None if self.authentication.anonymous
            else tuple(self.authorization.always_allow_paths),
        )


@dataclass(frozen=True)
class CompletedConfig(Config):
    """A completed Config (cf. CompletedConfig): the only kind a server is built from."""

    x509_client_ca_files: tuple[str, ...]  # the client CAs of x509 authentication
    anonymous_paths: tuple[str, ...] | None  # where requests may be anonymous; None: anywhere

    def new_authenticator(self) -> UnionAuthenticator:
        """A fresh authenticator (it caches verified certificates: one per server):
        request headers, then x509 client certificates, then anonymous."""
        authenticators: list[Authenticator] = []
        request_header = None
        rh = self.authentication.request_header
        if rh.client_ca_file:
            request_header = RequestHeaderAuthenticator(
                load_certificates(rh.client_ca_file), rh.allowed_names, rh.username_headers,
                rh.group_headers, rh.extra_header_prefixes,
            )
            authenticators.append(request_header)
        if self.x509_client_ca_files:
            authenticators.append(X509Authenticator(
                [c for p in self.x509_client_ca_files for c in load_certificates(p)]
            ))
        anonymous = AnonymousAuthenticator(
            None if self.anonymous_paths is None else AllowedPaths(self.anonymous_paths)
        )
        return UnionAuthenticator(authenticators, anonymous, request_header)

    def new_authorizer(self) -> Authorizer:
        """The always-allowed groups, then the always-allowed paths, then the mode's
        authorizer (cf. DelegatingAuthorizationOptions.toAuthorizer)."""
        authz = self.authorization
        if authz.mode != "AlwaysAllow":
            raise ValueError(f"authorization.mode: {authz.mode} is not implemented in this "
                             "version of kext; use AlwaysAllow")
        authorizers: list[Authorizer] = []
        if authz.always_allow_groups:
            authorizers.append(PrivilegedGroupsAuthorizer(authz.always_allow_groups))
        if authz.always_allow_paths:
            authorizers.append(PathAuthorizer(AllowedPaths(authz.always_allow_paths)))
        authorizers.append(AlwaysAllowAuthorizer())
        return UnionAuthorizer(authorizers)


def new_config(options: ServerConfig, serving: ServingCertificates, etcd: EtcdSettings) -> Config:
    """Apply the options, with the process's serving certificates and etcd, to a Config
    (cf. RecommendedOptions.ApplyTo)."""
    s = options.serving
    return Config(
        serving=serving,
        etcd=etcd,
        storage_prefix=options.storage.prefix,
        bookmark_interval=options.storage.watch_cache.bookmark_interval,
        authentication=options.authentication,
        authorization=options.authorization,
        max_requests_inflight=s.max_requests_inflight,
        max_mutating_requests_inflight=s.max_mutating_requests_inflight,
        request_timeout_seconds=s.request_timeout_seconds,
        max_request_body_bytes=s.max_request_body_bytes,
        resources=tuple(options.resources),
    )
