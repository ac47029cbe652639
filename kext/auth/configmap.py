"""The cluster's `kube-system/extension-apiserver-authentication` ConfigMap, which
kube-apiserver publishes for extension servers (`authentication.fromCluster: true`), read at
start-up and then followed with list+watch (cf. dynamiccertificates.ConfigMapCAController and
headerrequest.RequestHeaderAuthRequestController):

- `client-ca-file`: the CA of x509 client certificates;
- `requestheader-client-ca-file`, `requestheader-allowed-names`, `requestheader-username-
  headers`, `-uid-headers`, `-group-headers`, `-extra-headers-prefix` (JSON lists): the
  front-proxy identity.

As in k8s.io/apiserver: the ConfigMap missing at start-up means nothing is trusted from it
until it appears; a 403 reading it (kext's service account lacks the Role
extension-apiserver-authentication-reader in kube-system) or any other failure to read it is
a start-up error; a CA key that is emptied, or no longer parses, keeps the last CA (the
header lists follow the ConfigMap as it is); a deleted ConfigMap keeps everything as it was.
A rotated CA takes effect at once: for the TLS handshake (kext/server/tls.py follows the
bundles) and for the authenticators.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kext.auth.authentication import RequestHeaderAuthenticator, RequestHeaderNames
from kext.auth.ca import CABundle, parse_ca_bundle
from kext.kube.client import KubeClient
from kext.kube.errors import KubeError, KubeStatusError
from kext.kube.informer import Informer

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
NAME = "extension-apiserver-authentication"
READER_ROLE = "extension-apiserver-authentication-reader"
CONFIGMAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
START_TIMEOUT = 10.0

CLIENT_CA_KEY = "client-ca-file"
REQUEST_HEADER_CA_KEY = "requestheader-client-ca-file"
REQUEST_HEADER_KEYS = ("requestheader-allowed-names", "requestheader-username-headers",
                       "requestheader-uid-headers", "requestheader-group-headers",
                       "requestheader-extra-headers-prefix")


class ClusterAuthenticationError(Exception):
    """The ConfigMap cannot be read at start-up; the message says what to do about it."""


class AuthenticationConfigMap:
    """Keeps `client_ca` and `request_header` (its CA and header names) as the ConfigMap
    says; either may be None when server.yaml gives that part itself (its file wins)."""

    def __init__(self, client: KubeClient, client_ca: CABundle | None,
                 request_header: RequestHeaderAuthenticator | None) -> None:
        self.client = client
        self.client_ca = client_ca
        self.request_header = request_header
        self.informer: Informer | None = None

    def __repr__(self) -> str:
        return f"AuthenticationConfigMap({NAMESPACE}/{NAME})"

    async def start(self, timeout: float = START_TIMEOUT) -> None:
        """Read the ConfigMap once (ClusterAuthenticationError when that fails), then follow
        it."""
        where = f"configmap {NAMESPACE}/{NAME}"
        try:
            configmap = await self.client.get(f"{CONFIGMAPS}/{NAME}", timeout=timeout)
        except KubeStatusError as error:
            if error.code == 403:
                raise ClusterAuthenticationError(
                    f"cannot read {where} (403 Forbidden: {error.message}); kext's user "
                    f"needs the Role "
                    f"{READER_ROLE} in {NAMESPACE}, e.g. kubectl create rolebinding -n "
                    f"{NAMESPACE} kext-authentication-reader --role={READER_ROLE} "
                    "--serviceaccount=<namespace>:<service account>") from None
            if error.code != 404:
                raise ClusterAuthenticationError(f"cannot read {where}: {error}") from None
            log.warning("%s does not exist: no client or front-proxy certificate is trusted "
                        "from it until it appears", where)
        except KubeError as error:
            raise ClusterAuthenticationError(f"cannot read {where}: {error}") from None
        else:
            self.apply(configmap)
        self.informer = Informer(self.client, CONFIGMAPS,
                                 params={"fieldSelector": f"metadata.name={NAME}"})
        self.informer.add_handler(self._changed)
        self.informer.start()

    async def stop(self) -> None:
        if self.informer is not None:
            await self.informer.stop()
            self.informer = None

    def apply(self, configmap: dict[str, Any]) -> None:
        """Take what the ConfigMap says (see the module docstring for what is kept)."""
        data = configmap.get("data") or {}
        if self.client_ca is not None:
            _load_ca(self.client_ca, data.get(CLIENT_CA_KEY) or "", CLIENT_CA_KEY)
        if self.request_header is not None:
            _load_ca(self.request_header.ca, data.get(REQUEST_HEADER_CA_KEY) or "",
                     REQUEST_HEADER_CA_KEY)
            try:
                lists = [_strings(data.get(key) or "", key) for key in REQUEST_HEADER_KEYS]
            except ValueError as error:
                log.warning("%s/%s: %s; keeping the front-proxy header names in use",
                            NAMESPACE, NAME, error)
                return
            names = RequestHeaderNames.of(*lists)
            if names != self.request_header.names:
                self.request_header.names = names
                log.info("front-proxy settings from %s/%s: allowed names %s, user headers %s",
                         NAMESPACE, NAME, list(names.allowed_names) or "(any)",
                         list(names.username_headers))

    def _changed(self, kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if new is None:
            log.warning("%s/%s was deleted: keeping the CAs and front-proxy settings in use",
                        NAMESPACE, NAME)
            return
        self.apply(new)


def _load_ca(bundle: CABundle, pem: str, key: str) -> None:
    if not pem.strip():
        if bundle.loaded:
            log.warning("%s/%s: %s is empty; keeping the CA in use", NAMESPACE, NAME, key)
        return
    try:
        certificates = parse_ca_bundle(pem)
    except ValueError as error:
        log.warning("%s/%s: %s does not parse (%s); keeping the CA in use", NAMESPACE, NAME,
                    key, error)
        return
    if bundle.set(certificates):
        log.info("%s from %s/%s loaded: %d certificate(s)", key, NAMESPACE, NAME,
                 len(certificates))


def _strings(value: str, key: str) -> list[str]:
    """A JSON list of strings, as kube-apiserver writes them ("" is an empty list)."""
    if not value:
        return []
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{key} is not a JSON list: {error}") from None
    if not isinstance(decoded, list) or not all(isinstance(s, str) for s in decoded):
        raise ValueError(f"{key} is not a JSON list of strings")
    return decoded
