"""JSON schemas for the custom kinds the chart can render, which the Kubernetes schemas of
kubernetes-validate do not have: cert-manager's Issuer and Certificate (cert-manager.io/v1) and
prometheus-operator's ServiceMonitor (monitoring.coreos.com/v1).

Written from those projects' API references, for the fields the chart uses and their close
neighbours; any other field is refused, so a misspelt or misplaced key fails the tests as it
would fail `kubectl apply` against the real CRDs.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": _STRING}
_DURATION: Schema = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}


def _object(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


_METADATA = _object(
    {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
     "namespace": _STRING, "labels": _STRING_MAP, "annotations": _STRING_MAP},
    ("name", "namespace"),
)


def _kind(api_version: str, kind: str, spec: Schema) -> Schema:
    return _object(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _METADATA,
         "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


_ISSUER_REF = _object({"name": _STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                       "group": _STRING}, ("name",))
_KEY_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
]

CERTIFICATE = _kind("cert-manager.io/v1", "Certificate", _object(
    {
        "secretName": _STRING,
        "issuerRef": _ISSUER_REF,
        "commonName": {"type": "string", "maxLength": 64},
        "dnsNames": {"type": "array", "items": _STRING},
        "ipAddresses": {"type": "array", "items": _STRING},
        "isCA": {"type": "boolean"},
        "duration": _DURATION,
        "renewBefore": _DURATION,
        "usages": {"type": "array", "items": {"enum": _KEY_USAGES}},
        "privateKey": _object({
            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
            "size": {"type": "integer"},
            "encoding": {"enum": ["PKCS1", "PKCS8"]},
            "rotationPolicy": {"enum": ["Never", "Always"]},
        }),
        "secretTemplate": _object({"labels": _STRING_MAP, "annotations": _STRING_MAP}),
    },
    ("secretName", "issuerRef"),
))

ISSUER = _kind("cert-manager.io/v1", "Issuer", {
    **_object({
        "selfSigned": _object({"crlDistributionPoints": {"type": "array", "items": _STRING}}),
        "ca": _object({"secretName": _STRING,
                       "crlDistributionPoints": {"type": "array", "items": _STRING}},
                      ("secretName",)),
    }),
    "minProperties": 1,
    "maxProperties": 1,
})

_SECRET_KEY = _object({"name": _STRING, "key": _STRING, "optional": {"type": "boolean"}},
                      ("key",))
_LABEL_SELECTOR = _object({"matchLabels": _STRING_MAP,
                           "matchExpressions": {"type": "array", "items": {"type": "object"}}})

SERVICE_MONITOR = _kind("monitoring.coreos.com/v1", "ServiceMonitor", _object(
    {
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": _object({"any": {"type": "boolean"},
                                      "matchNames": {"type": "array", "items": _STRING}}),
        "jobLabel": _STRING,
        "endpoints": {"type": "array", "items": _object({
            "port": _STRING,
            "path": _STRING,
            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
            "interval": _DURATION,
            "scrapeTimeout": _DURATION,
            "bearerTokenFile": _STRING,
            "honorLabels": {"type": "boolean"},
            "tlsConfig": _object({
                "serverName": _STRING,
                "insecureSkipVerify": {"type": "boolean"},
                "ca": _object({"secret": _SECRET_KEY, "configMap": _SECRET_KEY}),
                "cert": _object({"secret": _SECRET_KEY, "configMap": _SECRET_KEY}),
                "keySecret": _SECRET_KEY,
            }),
        })},
    },
    ("selector", "endpoints"),
))

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("cert-manager.io/v1", "Certificate"): CERTIFICATE,
    ("cert-manager.io/v1", "Issuer"): ISSUER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
