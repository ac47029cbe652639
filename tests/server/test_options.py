"""The request options kube validates (kext.server.options): fieldManager and force."""

from __future__ import annotations

from kext.api import errors
from kext.server.options import default_manager, patch_options_causes, validate_field_manager


def test_default_manager_from_user_agent() -> None:
    assert default_manager("kubectl/v1.30.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert default_manager("Go-http-client/1.1") == "Go-http-client"
    assert default_manager("python\x07-client/1") == "python-client"
    assert default_manager("") == ""
    assert default_manager("x" * 200) == "x" * 128


def test_field_manager_options_match_kube() -> None:
    missing = errors.invalid("meta.k8s.io", "PatchOptions", "",
                             patch_options_causes(True, "", None))
    assert (missing.code, missing.message) == (
        422, 'PatchOptions.meta.k8s.io "" is invalid: '
             "fieldManager: Required value: is required for apply patch")
    forced = errors.invalid("meta.k8s.io", "PatchOptions", "",
                            patch_options_causes(False, "m", False))
    assert forced.message == ('PatchOptions.meta.k8s.io "" is invalid: '
                              "force: Forbidden: may not be specified for non-apply patch")
    assert patch_options_causes(True, "kubectl", True) == []
    assert [c.message for c in validate_field_manager("a" * 129)] == [
        "Too long: may not be more than 128 bytes"]
    assert [c.message for c in validate_field_manager("a\x07")] == [
        'Invalid value: "a\\a": invalid character U+0007']
