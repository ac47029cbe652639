"""The object types the Kubernetes libraries add (kubernetes.Quantity, kubernetes.URL,
net.IP, net.CIDR, kubernetes.NamedFormat, kubernetes.Semver, and the authz library's
kubernetes.authorization.Authorizer, PathCheck, GroupCheck, ResourceCheck and Decision), as
protobuf messages: the engine passes messages through CEL, and a message of one canonical
field compares equal exactly when the values are equal."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
TYPE_NAMES = {
    "Quantity": "kubernetes.Quantity", "URL": "kubernetes.URL", "IP": "net.IP",
    "CIDR": "net.CIDR", "NamedFormat": "kubernetes.NamedFormat", "Semver": "kubernetes.Semver",
    "Authorizer": "kubernetes.authorization.Authorizer",
    "PathCheck": "kubernetes.authorization.PathCheck",
    "GroupCheck": "kubernetes.authorization.GroupCheck",
    "ResourceCheck": "kubernetes.authorization.ResourceCheck",
    "Decision": "kubernetes.authorization.Decision",
}


def _files() -> list[descriptor_pb2.FileDescriptorProto]:
    files = []
    for package in dict.fromkeys(full.rpartition(".")[0] for full in TYPE_NAMES.values()):
        fdp = descriptor_pb2.FileDescriptorProto(
            name=f"kext/cel/{package.replace('.', '/')}.proto", package=package,
            syntax="proto3")
        for short, full in TYPE_NAMES.items():
            if full.rpartition(".")[0] == package:
                message = fdp.message_type.add(name=short)
                message.field.add(name="value", number=1, type=_F.TYPE_STRING,
                                  label=_F.LABEL_OPTIONAL)
        files.append(fdp)
    return files


FILES = tuple(_files())
_POOL = descriptor_pool.DescriptorPool()
for _file in FILES:
    _POOL.Add(_file)


def _message_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


Quantity = _message_class("kubernetes.Quantity")
URL = _message_class("kubernetes.URL")
IP = _message_class("net.IP")
CIDR = _message_class("net.CIDR")
NamedFormat = _message_class("kubernetes.NamedFormat")
Semver = _message_class("kubernetes.Semver")
Authorizer = _message_class("kubernetes.authorization.Authorizer")
PathCheck = _message_class("kubernetes.authorization.PathCheck")
GroupCheck = _message_class("kubernetes.authorization.GroupCheck")
ResourceCheck = _message_class("kubernetes.authorization.ResourceCheck")
Decision = _message_class("kubernetes.authorization.Decision")
