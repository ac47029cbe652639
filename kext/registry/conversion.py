"""Converting a resource's objects between its versions (cf. apiextensions-apiserver
pkg/apiserver/conversion: crConverter around a nopConverter or a webhookConverter).

The store keeps every object in the storage version and serves every served version: each
object written is converted to the storage version before it is stored, and each object read
(get, list item, watch event) to the version of the request. A `Converter` does that for one
resource, with one of three delegates, as the resource declares:

- `NopConverter` (`spec.conversion.strategy: None`): only apiVersion is rewritten.
- `HookConverter`: a Python callable named in the CRD's `kext.io/hooks` annotation under
  `conversion` ("package.module:callable"). Its contract:

      def convert(obj: dict, desired_api_version: str) -> dict   # or async def

  `obj` is a copy of one object (any version the CRD lists, served or not), `desired_api_version`
  is `<group>/<version>`; it returns the object in that version (it may change `obj` in place
  and return it). It must keep kind, metadata.name, namespace and uid; of metadata only its
  labels and annotations changes are kept, as for a webhook. An exception it raises is a failed
  conversion: 500, `conversion hook for <group>/<version>, Kind=<Kind> failed: <error>`.
- `WebhookConverter` (`strategy: Webhook`): an apiextensions.k8s.io/v1 (or v1beta1)
  ConversionReview POSTed to the webhook, one review per object or per list, every failure a
  500 whose message is kube's: `conversion webhook for <group>/<version>, Kind=<Kind> failed:
  <why>` (the webhook's own message when it answered with a failed result).

Objects already in the desired version are never handed to the delegate. A failure is a
StatusError (500 with kube's empty reason), which the store lets reach the client.
"""

from __future__ import annotations

import copy
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson

from kext.api import errors, meta
from kext.api.errors import causes_message
from kext.api.resource import ResourceDefinition

Object = dict[str, Any]

log = logging.getLogger(__name__)

# A resource's converter hook: (object, desired apiVersion) -> the object in that version.
ConverterHook = Callable[[Object, str], Object | Awaitable[Object]]

REVIEW_KIND = "ConversionReview"
REVIEW_API_VERSIONS = {"v1": "apiextensions.k8s.io/v1", "v1beta1": "apiextensions.k8s.io/v1beta1"}
# kube's conversion webhook client waits 30 s (its URL carries ?timeout=30s)
WEBHOOK_TIMEOUT_SECONDS = 30.0


class WebhookTransport(Protocol):
    """How a webhook is reached (kext.httpclient.WebhookClient): POST a JSON body, get the
    body of a 2xx answer; anything else raises an exception whose text says why, in the words
    kube prints after `conversion webhook for <gvk> failed: `."""

    url: str

    async def post(self, body: bytes, timeout: float) -> bytes: ...


class ObjectConverter(Protocol):
    """A conversion strategy (cf. crConverterInterface): objects, each not in api_version
    and each the converter's own copy, converted to api_version; raises ConversionFailed."""

    async def convert(self, objects: list[Object], api_version: str) -> list[Object]: ...


class ConversionFailed(Exception):
    """Why a conversion failed, in kube's words after `conversion webhook for <gvk> `."""


def gvk_string(obj: Object) -> str:
    """An object's group/version/kind as Go prints a GroupVersionKind: `g/v, Kind=K`."""
    return f"{obj.get('apiVersion', '')}, Kind={obj.get('kind', '')}"


class NopConverter:
    """strategy None: the same fields in every version, only apiVersion rewritten."""

    async def convert(self, objects: list[Object], api_version: str) -> list[Object]:
        for obj in objects:
            obj["apiVersion"] = api_version
        return objects


class HookConverter:
    """A Python converter hook (see the module docstring for its contract), called once per
    object; its results are checked as a webhook's are."""

    def __init__(self, hook: ConverterHook, name: str) -> None:
        self.hook = hook
        self.name = name

    async def convert(self, objects: list[Object], api_version: str) -> list[Object]:
        out = []
        for i, obj in enumerate(objects):
            original = copy.deepcopy(obj)
            try:
                result = self.hook(obj, api_version)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                log.warning("conversion hook %s failed", self.name, exc_info=True)
                raise ConversionFailed(f"failed: {type(exc).__name__}: {exc}") from None
            if not isinstance(result, dict):
                raise ConversionFailed(f"failed: {self.name} returned "
                                       f"{type(result).__name__}, not an object")
            out.append(_checked(original, result, api_version, i, len(objects) > 1))
        return out


class WebhookConverter:
    """strategy Webhook: one ConversionReview per call, in the first version of
    conversionReviewVersions kext speaks (v1 or v1beta1)."""

    def __init__(self, transport: WebhookTransport, review_versions: Sequence[str],
                 timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> None:
        self.transport = transport
        self.review_version = next((v for v in review_versions if v in REVIEW_API_VERSIONS), "")
        self.timeout = timeout

    async def convert(self, objects: list[Object], api_version: str) -> list[Object]:
        review_api_version = REVIEW_API_VERSIONS.get(self.review_version)
        if review_api_version is None:
            raise ConversionFailed("failed: no supported conversion review versions")
        uid = str(uuid.uuid4())
        review = {"kind": REVIEW_KIND, "apiVersion": review_api_version,
                  "request": {"uid": uid, "desiredAPIVersion": api_version,
                              "objects": objects}}
        try:
            answer = await self.transport.post(orjson.dumps(review), self.timeout)
        except Exception as exc:
            raise ConversionFailed(f"failed: {exc}") from None
        converted = _review_response(answer, review_api_version, uid)
        if len(converted) != len(objects):
            raise ConversionFailed(f"returned {len(converted)} objects, expected {len(objects)}")
        return [_checked(original, result, api_version, i, len(objects) > 1)
                for i, (original, result) in enumerate(zip(objects, converted, strict=True))]


def _review_response(answer: bytes, review_api_version: str, uid: str) -> list[Any]:
    """The convertedObjects of a webhook's answer, after kube's checks of the review
    (getConvertedObjectsFromResponse)."""
    try:
        review = orjson.loads(answer)
    except orjson.JSONDecodeError as exc:
        raise ConversionFailed(f"failed: the response is not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise ConversionFailed("failed: the response is not a ConversionReview")
    if review_api_version.endswith("/v1"):
        got_api_version, got_kind = review.get("apiVersion", ""), review.get("kind", "")
        if (got_api_version, got_kind) != (review_api_version, REVIEW_KIND):
            raise ConversionFailed(
                f"failed: expected webhook response of {review_api_version}, Kind={REVIEW_KIND},"
                f" got {got_api_version}, Kind={got_kind}")
    response = review.get("response")
    if not isinstance(response, dict):
        raise ConversionFailed("failed: no response provided")
    if review_api_version.endswith("/v1") and response.get("uid") != uid:
        raise ConversionFailed(
            f'failed: expected response.uid="{uid}", got "{response.get("uid", "")}"')
    result = response.get("result")
    result = result if isinstance(result, dict) else {}
    if result.get("status") != "Success":
        message = result.get("message")
        raise ConversionFailed(
            f"failed: {message}" if isinstance(message, str) and message else
            f"failed: response.result.status was '{result.get('status', '')}', not 'Success'")
    converted = response.get("convertedObjects") or []
    if not isinstance(converted, list):
        raise ConversionFailed("failed: response.convertedObjects is not a list")
    return converted


def _checked(original: Object, converted: Any, api_version: str, index: int,
             in_list: bool) -> Object:
    """A converted object after kube's checks (apiVersion, kind, name, namespace, uid kept),
    with the original's metadata restored but for labels and annotations."""
    at = f"converted object at index {index}" if in_list else f"object at index {index}"
    if not isinstance(converted, dict):
        raise ConversionFailed(f"returned invalid {at}: not an object")
    if converted.get("apiVersion") != api_version:
        raise ConversionFailed(f"returned invalid {at}: invalid groupVersion (expected "
                               f"{api_version}, received {converted.get('apiVersion', '')})")
    if converted.get("kind") != original.get("kind"):
        raise ConversionFailed(f"returned invalid {at}: invalid kind (expected "
                               f"{original.get('kind')}, received {converted.get('kind', '')})")
    what = f"converted object at index {index}" if in_list else "object"
    meta_what = f"metadata in object at index {index}" if in_list else "metadata"
    old_meta = original.get("metadata") or {}
    new_meta = converted.get("metadata")
    new_meta = new_meta if isinstance(new_meta, dict) else {}
    for key, label in (("name", "name"), ("namespace", "namespace"), ("uid", "UID")):
        if old_meta.get(key, "") != new_meta.get(key, ""):
            raise ConversionFailed(f"returned invalid {what}: must have the same {label}: "
                                   f"{old_meta.get(key, '')} != {new_meta.get(key, '')}")
    if not isinstance(converted.get("metadata"), dict):
        raise ConversionFailed(f"returned invalid {meta_what}: missing metadata in converted "
                               "object")
    restored = copy.deepcopy(old_meta)
    for key in ("labels", "annotations"):
        value = new_meta.get(key)
        if value is None:
            restored.pop(key, None)
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConversionFailed(f"returned invalid {meta_what}: metadata.{key} must be a map "
                                   "of strings")
        if value != old_meta.get(key):
            problems = (meta.validate_labels(value, "metadata.labels") if key == "labels"
                        else meta.validate_annotations(value, "metadata.annotation"))
            if problems:
                raise ConversionFailed(f"returned invalid {meta_what}: "
                                       + causes_message(problems))
        restored[key] = value
    converted["metadata"] = restored
    return converted


class Converter:
    """Conversion for one resource (cf. crConverter): checks the versions involved, leaves
    objects already in the desired version alone, and hands the rest, copied, to the
    resource's strategy in one call."""

    def __init__(self, definition: ResourceDefinition, delegate: ObjectConverter,
                 what: str = "webhook") -> None:
        self.definition = definition
        self.delegate = delegate
        self.nop = isinstance(delegate, NopConverter)
        self._what = what  # "webhook" or "hook", as the failures name the converter
        self._valid = {definition.api_version(v.name) for v in definition.versions}

    async def convert(self, obj: Object, version: str) -> Object:
        """obj in version (obj itself when it is in it already; otherwise a converted copy,
        never obj changed)."""
        return (await self.convert_list([obj], version))[0]

    def convert_now(self, obj: Object, version: str) -> Object | None:
        """obj in version without waiting, when that needs no call (None otherwise): what the
        watch path uses to skip a task per event."""
        api_version = self.definition.api_version(version)
        if obj.get("apiVersion") == api_version:
            return obj
        if not self.nop:
            return None
        self._check_versions([obj], api_version)
        out = dict(obj)
        out["apiVersion"] = api_version
        return out

    async def convert_list(self, objects: Sequence[Object], version: str) -> list[Object]:
        """Each object in version, in order; those not in it converted in one call."""
        api_version = self.definition.api_version(version)
        pending = [i for i, o in enumerate(objects) if o.get("apiVersion") != api_version]
        out = list(objects)
        if not pending:
            return out
        self._check_versions([objects[i] for i in pending], api_version)
        if self.nop:
            for i in pending:
                out[i] = {**objects[i], "apiVersion": api_version}
            return out
        first = objects[pending[0]]
        try:
            converted = await self.delegate.convert(
                [copy.deepcopy(objects[i]) for i in pending], api_version)
        except ConversionFailed as exc:
            raise conversion_error(f"conversion {self._what} for {gvk_string(first)} {exc}"
                                   ) from None
        for i, obj in zip(pending, converted, strict=True):
            out[i] = obj
        return out

    def _check_versions(self, objects: Sequence[Object], api_version: str) -> None:
        if api_version not in self._valid:
            raise conversion_error(
                f"request to convert CR to an invalid group/version: {api_version}")
        for i, obj in enumerate(objects):
            if obj.get("apiVersion") not in self._valid:
                raise conversion_error(
                    f"request to convert CR list failed, list index {i} has invalid "
                    f"group/version: {obj.get('apiVersion', '')}" if len(objects) > 1 else
                    f"request to convert CR from an invalid group/version: "
                    f"{obj.get('apiVersion', '')}")


def conversion_error(message: str) -> errors.StatusError:
    """How kube answers a failed conversion: a plain error turned into a Status (500, no
    reason, the error's text as message)."""
    return errors.StatusError(500, "", message)


def new_converter(definition: ResourceDefinition, *, hook: ConverterHook | None = None,
                  transport: WebhookTransport | None = None,
                  timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> Converter:
    """The converter a definition declares: its conversion hook (loaded by the caller: the
    registry imports no user code), its webhook (reached through transport), or None."""
    if hook is not None:
        name = definition.hooks.get("conversion", ("",))[0]
        return Converter(definition, HookConverter(hook, name), "hook")
    if definition.conversion.strategy == "Webhook":
        if transport is None:
            raise ValueError(f"{definition.name}: a conversion webhook needs a transport")
        return Converter(definition,
                         WebhookConverter(transport, definition.conversion.review_versions,
                                          timeout))
    return Converter(definition, NopConverter())
