"""Server-wide Python admission hooks (`admission.hooks`) as admission plugins: each is called
with one `AdmissionRequest` on every create, update and delete of every resource (its
subresources included), in the order configured.

A validating hook allows by returning; a mutating hook changes the request's object in place
or returns the new object. Either refuses by raising `Denied`, answered as kube answers a
webhook's denial, worded `admission hook "<module:callable>" denied the request: <message>`
(the hook's import path where kube names the webhook). Any other exception is a failure of
the hook: a 500 `failed calling admission hook "<module:callable>": <error>` under
`failurePolicy: Fail`, logged and allowed under `Ignore`. A mutating hook is given a copy of
the object, taken only when the hook succeeds, so a failing hook changes nothing.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from kext.admission.attributes import CREATE, DELETE, UPDATE, Attributes, Operation, copy_object
from kext.admission.hooks import load_hook
from kext.admission.request import AdmissionRequest, Denied
from kext.api import errors
from kext.metrics import AdmissionMetrics

log = logging.getLogger(__name__)

Object = dict[str, Any]
PythonHookFunc = Callable[[AdmissionRequest], Any]

MUTATING = "Mutating"
VALIDATING = "Validating"
FAIL = "Fail"
IGNORE = "Ignore"


class PythonHook:
    """One server-wide hook, a mutating or a validating plugin by its type."""

    def __init__(self, path: str, hook: PythonHookFunc, *, mutating: bool,
                 failure_policy: str = FAIL, metrics: AdmissionMetrics | None = None) -> None:
        self.path = path
        self.hook = hook
        self.mutating = mutating
        self.failure_policy = failure_policy
        self.metrics = metrics

    @classmethod
    def load(cls, path: str, type_: str = VALIDATING, failure_policy: str = FAIL,
             metrics: AdmissionMetrics | None = None) -> PythonHook:
        """Import the hook at path ("package.module:callable")."""
        # load_hook is typed for the resource hooks' signature; this one takes a request
        hook = cast(PythonHookFunc, load_hook(path))
        return cls(path, hook, mutating=type_ == MUTATING,
                   failure_policy=failure_policy, metrics=metrics)

    def __repr__(self) -> str:
        return f"PythonHook({self.path!r}, {MUTATING if self.mutating else VALIDATING})"

    def handles(self, operation: Operation) -> bool:
        return operation in (CREATE, UPDATE, DELETE)

    async def admit(self, attributes: Attributes) -> Object | None:
        """A mutating hook's call: the object it leaves, when that differs from the one it
        was given a copy of (None: unchanged)."""
        obj = attributes.object
        request = AdmissionRequest.of(attributes, copy_object(obj) if obj is not None else None)
        ok, result = await self._call(request, attributes, "admit")
        if not ok or obj is None:
            return None  # failed open; or a DELETE, which has no object to change
        changed = request.object if result is None else result
        if not isinstance(changed, dict):
            self._failed(attributes, TypeError(
                f"a mutating hook returns None or an object, not {type(changed).__name__}"))
            return None
        return None if changed == obj else changed

    async def validate(self, attributes: Attributes) -> None:
        await self._call(AdmissionRequest.of(attributes, attributes.object), attributes,
                         "validate")

    async def _call(self, request: AdmissionRequest, attributes: Attributes,
                    step: str) -> tuple[bool, Any]:
        """Run the hook: (True, what it returned), or (False, None) when it failed open.
        Raises the Status of a denial or of a failure under failurePolicy Fail."""
        started = time.perf_counter()
        rejected = True
        try:
            result = self.hook(request)
            if inspect.isawaitable(result):
                result = await result
            rejected = False
            return True, result
        except Denied as denied:
            raise denial(f"admission hook {errors.go_quote(self.path)}", denied) from None
        except Exception as exc:
            rejected = self.failure_policy != IGNORE
            self._failed(attributes, exc)
            return False, None
        finally:
            if self.metrics is not None:
                self.metrics.observe_controller(self.path, step, attributes.operation, rejected,
                                                time.perf_counter() - started)

    def _failed(self, attributes: Attributes, exc: Exception) -> None:
        """A failure of the hook: logged; raised as a 500 unless the hook fails open."""
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.failure_policy == IGNORE:
            log.warning("admission hook %s failed, failing open: %s", self.path, reason,
                        exc_info=exc)
            return
        log.warning("admission hook %s failed, failing closed: %s", self.path, reason,
                    exc_info=exc)
        raise errors.internal_error(
            f"failed calling admission hook {errors.go_quote(self.path)}: {reason}") from None


def denial(denied_by: str, denied: Denied) -> errors.StatusError:
    """A hook's denial as kube turns a webhook's into a Status (webhook/errors ToStatusErr):
    a code below 400 becomes 400; the message says who denied, and why when told."""
    code = denied.code if denied.code is not None and denied.code >= 400 else 400
    reason = denied.reason or ""
    if denied.message:
        message = f"{denied_by} denied the request: {denied.message}"
    elif reason:
        message = f"{denied_by} denied the request: {reason}"
    else:
        message = f"{denied_by} denied the request without explanation"
    return errors.StatusError(code, reason, message)
