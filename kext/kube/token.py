"""Bearer tokens for kube-apiserver: a fixed one from the kubeconfig, or a file re-read as it
rotates (client-go's cachingTokenSource: the kubelet refreshes a projected service account
token well before it expires, so a copy younger than a minute is good; a 401 drops the copy
so the next request reads the file again)."""

from __future__ import annotations

import time
from collections.abc import Callable

from kext.kube.errors import KubeError

TOKEN_FILE_PERIOD = 60.0  # seconds a file token is trusted before the file is read again
TOKEN_FILE_LEEWAY = 10.0


class TokenSource:
    """A token to send, and a way to say it was refused."""

    def token(self) -> str:
        """The token to send now ("" for none)."""
        return ""

    def refused(self, read_before: float) -> None:
        """kube-apiserver answered 401 to a request started at monotonic time read_before:
        forget a copy read before then, so the next token() reads it afresh."""


class StaticToken(TokenSource):
    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    def token(self) -> str:
        return self._token


class FileToken(TokenSource):
    """The token in a file, read at most once per `period` and again after a 401. If a re-read
    fails the last good token is kept (the file may be mid-rotation)."""

    def __init__(self, path: str, period: float = TOKEN_FILE_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.period = period
        self._clock = clock
        self._token = ""
        self._read_at = float("-inf")

    def __repr__(self) -> str:
        return f"FileToken({self.path!r})"

    def token(self) -> str:
        now = self._clock()
        if self._token and now < self._read_at + max(self.period - TOKEN_FILE_LEEWAY, 0):
            return self._token
        try:
            with open(self.path, "rb") as f:
                token = f.read().decode("utf-8", "replace").strip()
        except OSError as error:
            if self._token:
                return self._token
            raise KubeError(f"cannot read the token file {self.path}: "
                            f"{error.strerror or error}") from None
        if not token:
            if self._token:
                return self._token
            raise KubeError(f"the token file {self.path} is empty")
        self._token, self._read_at = token, now
        return token

    def refused(self, read_before: float) -> None:
        if self._read_at < read_before:
            self._token, self._read_at = "", float("-inf")
