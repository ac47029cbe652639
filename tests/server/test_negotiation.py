"""Accept headers as kubectl and client-go send them."""

import pytest

from kext.api.errors import StatusError
from kext.server.negotiation import Representation, negotiate


def test_kubectl_get_asks_for_a_table() -> None:
    accept = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
              "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
    target = negotiate(accept)
    assert target.representation is Representation.TABLE
    assert target.meta_version == "v1"


def test_partial_object_metadata_and_plain_json() -> None:
    target = negotiate("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
    assert target.representation is Representation.PARTIAL_OBJECT_METADATA
    assert negotiate("").representation is Representation.OBJECT
    assert negotiate("*/*").representation is Representation.OBJECT
    assert negotiate("application/yaml").yaml


def test_protobuf_only_is_not_acceptable() -> None:
    with pytest.raises(StatusError) as info:
        negotiate("application/vnd.kubernetes.protobuf")
    assert info.value.code == 406
    assert info.value.reason == "NotAcceptable"


def test_unknown_transform_falls_back_to_the_next_media_type() -> None:
    target = negotiate("application/json;as=Foo;v=v1;g=meta.k8s.io, application/json")
    assert target.representation is Representation.OBJECT


def test_q_values_pick_the_representation() -> None:
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    assert negotiate(f"application/json;q=0.5, {table}").representation is Representation.TABLE
    assert negotiate(f"{table};q=0.5, application/json").representation is Representation.OBJECT
    assert negotiate("application/json;q=0.5, application/yaml").yaml
    assert not negotiate("application/yaml;q=0.5, */*").yaml


def test_q_zero_refuses_a_media_type() -> None:
    assert negotiate("application/json;q=0, application/yaml").yaml
    with pytest.raises(StatusError) as info:
        negotiate("application/json;q=0")
    assert info.value.code == 406
