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
from dataclasses import dataclass, field

from kext.api.resource import ResourceDefinition
from kext.auth.authentication import (
    NO_REQUEST_HEADERS,
    AnonymousAuthenticator,
    Authenticator,
    BearerTokenAuthenticator,
    RequestHeaderAuthenticator,
    RequestHeaderNames,
    UnionAuthenticator,
    X509Authenticator,
)
from kext.auth.authorization.authorizer import Authorizer
from kext.auth.authorization.builtin import AlwaysAllowAuthorizer, PrivilegedGroupsAuthorizer
from kext.auth.authorization.metered import MeteredAuthorizer
from kext.auth.authorization.path import PathAuthorizer
from kext.auth.authorization.union import UnionAuthorizer
from kext.auth.authorization.webhook import SubjectAccessReviewAuthorizer
from kext.auth.ca import CABundle
from kext.auth.configmap import AuthenticationConfigMap
from kext.auth.paths import AllowedPaths
from kext.auth.token import CachedTokenAuthenticator, TokenReviewAuthenticator
from kext.certs import load_certificates
from kext.config import (
    AdmissionConfig,
    AuditConfig,
    AuthenticationConfig,
    AuthorizationConfig,
    KubernetesConfig,
    ServerConfig,
)
from kext.kube import KubeClient, from_settings
from kext.metrics import Metrics
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
    kubernetes: KubernetesConfig  # how to reach kube-apiserver (kext.kube)
    max_requests_inflight: int
    max_mutating_requests_inflight: int
    request_timeout_seconds: float
    max_request_body_bytes: int
    read_header_timeout_seconds: float
    resources: tuple[ResourceDefinition, ...]
    admission: AdmissionConfig
    audit: AuditConfig
    shutdown_delay_seconds: float

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

    def new_kube_client(self) -> KubeClient | None:
        """kext's one client for kube-apiserver (TokenReview, SubjectAccessReview, the
        authentication ConfigMap), or None when `kubernetes:` names no cluster. Built on the
        running reactor. Raises KubeConfigError for an unusable kubeconfig."""
        access = from_settings(self.kubernetes)
        return None if access is None else KubeClient(access)

    def new_security(self, metrics: Metrics | None = None,
                     kube: KubeClient | None = None) -> Security:
        """This server's authentication and authorization (cf. DelegatingAuthenticationOptions
        and DelegatingAuthorizationOptions.ApplyTo): what server.yaml gives, and what is
        delegated to the cluster through kube. Start it before serving."""
        authenticator, cluster_cas, configmap = self._authentication(metrics, kube)
        return Security(authenticator, self.new_authorizer(metrics, kube), cluster_cas,
                        configmap)

    def new_authenticator(self) -> UnionAuthenticator:
        """A fresh authenticator from server.yaml alone (nothing delegated): request
        headers, then x509 client certificates, then anonymous."""
        return self._authentication(None, None)[0]

    def _authentication(
        self, metrics: Metrics | None, kube: KubeClient | None,
    ) -> tuple[UnionAuthenticator, tuple[CABundle, ...], AuthenticationConfigMap | None]:
        """The authenticator, the CA bundles it follows from the cluster, and what follows
        them (the ConfigMap), when kube is given and fromCluster asks for it."""
        authn, rh = self.authentication, self.authentication.request_header
        from_cluster = authn.from_cluster and kube is not None
        # A CA file in server.yaml wins over the ConfigMap's (for the request header: with
        # every other front-proxy setting). What comes from the cluster starts empty.
        cluster_cas: list[CABundle] = []
        client_ca = None
        if from_cluster and not authn.client_ca_file:
            client_ca = CABundle("client-ca-file (cluster)")
            cluster_cas.append(client_ca)
        request_header = None
        if rh.client_ca_file:
            request_header = RequestHeaderAuthenticator(
                CABundle(rh.client_ca_file, load_certificates(rh.client_ca_file)),
                RequestHeaderNames.of(rh.allowed_names, rh.username_headers, rh.uid_headers,
                                      rh.group_headers, rh.extra_header_prefixes),
            )
        elif from_cluster:
            request_header = RequestHeaderAuthenticator(
                CABundle("requestheader-client-ca-file (cluster)"), NO_REQUEST_HEADERS)
            cluster_cas.append(request_header.ca)
        configmap = None
        if kube is not None and cluster_cas:
            configmap = AuthenticationConfigMap(
                kube, client_ca, None if rh.client_ca_file else request_header)

        authenticators: list[Authenticator] = []
        if request_header is not None:
            authenticators.append(request_header)
        x509_roots = [c for p in self.x509_client_ca_files for c in load_certificates(p)]
        if x509_roots:
            authenticators.append(X509Authenticator(CABundle("client CA files", x509_roots)))
        if client_ca is not None:
            authenticators.append(X509Authenticator(client_ca))
        if authn.token_review.enabled and kube is not None:
            reviews = TokenReviewAuthenticator(kube, authn.token_review.audiences,
                                               metrics=metrics)
            authenticators.append(BearerTokenAuthenticator(CachedTokenAuthenticator(
                reviews, authn.token_review.cache_ttl_seconds, metrics)))
        anonymous = AnonymousAuthenticator(
            None if self.anonymous_paths is None else AllowedPaths(self.anonymous_paths)
        )
        authenticator = UnionAuthenticator(authenticators, anonymous, request_header, metrics)
        return authenticator, tuple(cluster_cas), configmap

    def new_authorizer(self, metrics: Metrics | None = None,
                       kube: KubeClient | None = None) -> Authorizer:
        """The always-allowed groups, then the always-allowed paths, then the mode's
        authorizer: AlwaysAllow, or a SubjectAccessReview through kube for Delegated (cf.
        DelegatingAuthorizationOptions.toAuthorizer); metered when given metrics."""
        authz = self.authorization
        authorizers: list[Authorizer] = []
        if authz.always_allow_groups:
            authorizers.append(PrivilegedGroupsAuthorizer(authz.always_allow_groups))
        if authz.always_allow_paths:
            authorizers.append(PathAuthorizer(AllowedPaths(authz.always_allow_paths)))
        if authz.mode == "AlwaysAllow":
            authorizers.append(AlwaysAllowAuthorizer())
        elif kube is None:
            # Never fail open: Delegated with nobody to ask is no authorizer at all.
            raise ValueError("authorization.mode: Delegated needs kubernetes.kubeconfig or "
                             "kubernetes.inCluster: true")
        else:
            authorizers.append(SubjectAccessReviewAuthorizer(
                kube, authz.cache_authorized_ttl_seconds, authz.cache_unauthorized_ttl_seconds,
                metrics=metrics))
        union = UnionAuthorizer(authorizers)
        return union if metrics is None else MeteredAuthorizer(union, metrics)


@dataclass
class Security:
    """One server's authentication and authorization (cf. AuthenticationInfo and
    AuthorizationInfo): the authenticator and authorizer the filter chain uses, the client
    CA bundles followed from the cluster (the TLS handshake accepts them as they change),
    and the follower of the cluster's authentication ConfigMap, run by start()/stop()."""

    authenticator: UnionAuthenticator
    authorizer: Authorizer
    cluster_client_cas: tuple[CABundle, ...] = ()
    configmap: AuthenticationConfigMap | None = field(default=None)

    async def start(self) -> None:
        """Read the cluster's authentication ConfigMap (ClusterAuthenticationError when it
        cannot be read) and follow it."""
        if self.configmap is not None:
            await self.configmap.start()

    async def stop(self) -> None:
        if self.configmap is not None:
            await self.configmap.stop()


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
        kubernetes=options.kubernetes,
        max_requests_inflight=s.max_requests_inflight,
        max_mutating_requests_inflight=s.max_mutating_requests_inflight,
        request_timeout_seconds=s.request_timeout_seconds,
        max_request_body_bytes=s.max_request_body_bytes,
        read_header_timeout_seconds=s.read_header_timeout_seconds,
        resources=tuple(options.resources),
        admission=options.admission,
        audit=options.audit,
        shutdown_delay_seconds=s.shutdown_delay_seconds,
    )
