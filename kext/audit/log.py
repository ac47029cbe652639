"""The audit log backend (cf. k8s.io/apiserver plugin/pkg/audit/log, behind the buffered
backend of plugin/pkg/audit/buffered): events are queued on the request path, never waiting,
and a writer thread renders and writes them in batches.

A full queue drops the event (counted as kube counts it: `apiserver_audit_error_total
{plugin="buffered"}`); an event that cannot be written (full disk, unwritable file) is counted
under `plugin="log"`. Both are logged, at most once every LOG_EVERY seconds. Neither ever
blocks or fails a request.

`RotatingFile` rotates as lumberjack (which kube-apiserver's --audit-log-maxsize and
--audit-log-maxbackups configure): a write that would take the file past max_bytes first
renames it to `<name>-<UTC time>.<ext>` and opens a new one; only the newest max_backups
renamed files are kept (0 keeps them all)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from kext.audit.event import AuditEvent, render

log = logging.getLogger(__name__)

PLUGIN_BUFFERED = "buffered"
PLUGIN_LOG = "log"
QUEUE_SIZE = 10000  # kube's default audit buffer (--audit-log-batch-buffer-size)
MAX_BATCH = 400  # events written per write call
LOG_EVERY = 10.0  # seconds between two log lines about the same failure
_BACKUP_TIME = "%Y-%m-%dT%H-%M-%S"
_STOP = object()

ErrorCounter = Callable[[str, int], None]


class RotatingFile:
    """An append-only file rotated by size, as lumberjack rotates it."""

    def __init__(self, path: str, max_bytes: int, max_backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_backups = max_backups
        self._file: BinaryIO | None = None
        self._size = 0

    def write(self, lines: list[bytes]) -> tuple[int, str]:
        """Append lines, rotating before a line that would not fit. Returns how many lines
        could not be written, and why ("" when all were)."""
        lost, reason = 0, ""
        pending: list[bytes] = []
        pending_size = 0
        for line in lines:
            if len(line) > self.max_bytes:  # lumberjack refuses such a write too
                lost += 1
                reason = (f"an event of {len(line)} bytes exceeds the maximum file size of "
                          f"{self.max_bytes} bytes")
                continue
            try:
                if self._file is None:
                    self._open(len(line))
                if self._size + pending_size + len(line) > self.max_bytes:
                    self._flush(pending)
                    pending, pending_size = [], 0
                    self._rotate()
            except OSError as exc:
                lost += len(pending) + 1
                reason = exc.strerror or str(exc)
                pending, pending_size = [], 0
                self.close()  # opened again for the next line (the directory may be back)
                continue
            pending.append(line)
            pending_size += len(line)
        try:
            self._flush(pending)
        except OSError as exc:
            lost += len(pending)
            reason = exc.strerror or str(exc)
            self.close()
        return lost, reason

    def _flush(self, lines: list[bytes]) -> None:
        if not lines:
            return
        assert self._file is not None
        data = b"".join(lines)
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _open(self, first_write: int) -> None:
        """Append to the existing file, or rotate it first if the write would not fit."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = -1
        if size >= 0 and size + first_write <= self.max_bytes:
            self._file = open(self.path, "ab")  # noqa: SIM115 - held until close()
            self._size = size
            return
        self._rotate()

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        mode = 0o600
        if os.path.exists(self.path):
            mode = os.stat(self.path).st_mode & 0o777
            os.rename(self.path, self._backup_name())
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, mode)
        self._file = os.fdopen(fd, "ab")
        self._size = 0
        self._remove_old_backups()

    def _backup_name(self) -> str:
        base, ext = os.path.splitext(self.path)
        now = datetime.datetime.now(datetime.UTC)
        while True:
            stamp = f"{now.strftime(_BACKUP_TIME)}.{now.microsecond // 1000:03d}"
            name = f"{base}-{stamp}{ext}"
            if not os.path.exists(name):
                return name
            # two rotations within a millisecond: lumberjack would overwrite the first
            now += datetime.timedelta(milliseconds=1)

    def backups(self) -> list[str]:
        """The rotated files of this log, newest first."""
        directory = os.path.dirname(self.path) or "."
        base, ext = os.path.splitext(os.path.basename(self.path))
        found = []
        for name in os.listdir(directory):
            if not (name.startswith(f"{base}-") and name.endswith(ext)):
                continue
            stamp = name[len(base) + 1:len(name) - len(ext)]
            try:
                when = datetime.datetime.strptime(stamp, f"{_BACKUP_TIME}.%f")
            except ValueError:
                continue  # not one of ours
            found.append((when, os.path.join(directory, name)))
        return [path for _, path in sorted(found, reverse=True)]

    def _remove_old_backups(self) -> None:
        if self.max_backups <= 0:
            return
        for path in self.backups()[self.max_backups:]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class _Stdout:
    """`logPath: "-"`: events on standard output, never rotated."""

    def write(self, lines: list[bytes]) -> tuple[int, str]:
        try:
            sys.stdout.buffer.write(b"".join(lines))
            sys.stdout.buffer.flush()
        except OSError as exc:
            return len(lines), exc.strerror or str(exc)
        return 0, ""

    def close(self) -> None:
        pass


class _RateLimitedLog:
    """Logs a recurring failure at most once every LOG_EVERY seconds, with the count since."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def error(self, kind: str, message: str, events: int) -> None:
        now = time.monotonic()
        with self._lock:
            suppressed = self._suppressed.get(kind, 0) + events
            if now - self._last.get(kind, -LOG_EVERY) < LOG_EVERY:
                self._suppressed[kind] = suppressed
                return
            self._last[kind] = now
            self._suppressed[kind] = 0
        log.error("audit: %s (%d audit %s lost since the last report)", message, suppressed,
                  "event" if suppressed == 1 else "events")


class AuditLog:
    """The audit sink of one server: `process(event)` from the event loop, a writer thread
    started by `start()`, `await close()` to write what is queued and stop."""

    def __init__(self, path: str, max_size_mb: int, max_backups: int,
                 count_errors: ErrorCounter, queue_size: int = QUEUE_SIZE,
                 max_bytes: int | None = None) -> None:
        self.path = path
        self._out: RotatingFile | _Stdout = _Stdout() if path == "-" else RotatingFile(
            path, max_bytes if max_bytes is not None else max_size_mb * 1024 * 1024,
            max_backups)
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._count_errors = count_errors
        self._report = _RateLimitedLog()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit log writer", daemon=True)
        self._thread.start()

    def process(self, event: AuditEvent) -> None:
        """Queue an event (a snapshot: see AuditEvent.at_stage) without ever waiting."""
        if self._closed:
            self._lost(PLUGIN_BUFFERED, "the audit log is closed", 1)
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._lost(PLUGIN_BUFFERED, f"the audit queue is full ({self._queue.maxsize} "
                       "events waiting to be written)", 1)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking events; wait (bounded) until the writer wrote the queued ones."""
        self._closed = True
        if self._thread is None:
            return
        try:  # the stop marker waits for room in a full queue, not for ever
            await asyncio.to_thread(self._queue.put, _STOP, True, timeout)
        except queue.Full:
            log.warning("audit: the writer did not take the queued events within %ss; "
                        "%d are not written", timeout, self._queue.qsize())
            return
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("audit: the writer did not finish within %ss", timeout)

    def _lost(self, plugin: str, message: str, events: int) -> None:
        self._count_errors(plugin, events)
        self._report.error(plugin, message, events)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [e for e in batch if e is not _STOP]
            self._write(batch)
        self._out.close()

    def _write(self, batch: list[object]) -> None:
        lines = []
        for event in batch:
            assert isinstance(event, AuditEvent)
            try:
                lines.append(render(event))
            except Exception as exc:  # an event that cannot be encoded is lost, not the rest
                self._lost(PLUGIN_LOG, f"cannot encode an audit event: {exc}", 1)
        if not lines:
            return
        lost, reason = self._out.write(lines)
        if lost:
            self._lost(PLUGIN_LOG, f"cannot write to {self.path}: {reason}", lost)
