"""The supervisor of serving.workers > 1: the process-level parts (kext/server/process.py:
certificates, embedded etcd, the listening socket) and N worker processes serving on that
socket (kext/server/worker.py). It serves no request itself.

Why an inherited socket rather than SO_REUSEPORT: one socket means one accept queue, so a
connection waits for whichever worker accepts first (a busy worker accepts less), where
SO_REUSEPORT hashes each connection to one worker's own queue, busy or not, and drops the
connections queued for a worker that dies; the supervisor holding the socket keeps the port
bound while a worker restarts; and it works the same wherever Twisted runs.

- Start: certificates and embedded etcd, the socket, the completed config; then every worker,
  each given the socket, its own end of a channel (kext/server/channel.py) and its settings
  (the config with its share of the in-flight limits, as JSON on its standard input). kext is
  serving once every worker says so; a worker that exits before that fails the start (exit 1).
- A worker that exits later is started again after a back-off (1 s, doubling to 60 s; back to
  1 s once a worker has run for 60 s), and logged; the others keep serving.
- /metrics on any worker: it asks the supervisor, which asks every worker for its samples and
  answers their sum (kext.metrics.WorkerSums).
- SIGTERM/SIGINT: the supervisor closes its descriptor of the socket and sends SIGTERM to every
  worker; each stops as a single kext does (readyz fails, the listener closes, requests in
  flight finish, watches end); once all have exited the embedded etcd stops, and the exit
  code is 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from kext.config import ServerConfig
from kext.metrics import WorkerSums, parse_samples
from kext.server.app import announce
from kext.server.channel import Channel
from kext.server.config import new_config
from kext.server.process import Process
from kext.server.worker import WorkerSettings, worker_settings
from kext.storage.embedded import die_with_parent

log = logging.getLogger("kext")

BACKOFF_INITIAL = 1.0  # seconds before a worker that exited is started again
BACKOFF_MAX = 60.0
BACKOFF_RESET = 60.0  # a worker that ran this long is restarted after BACKOFF_INITIAL again
COLLECT_TIMEOUT = 2.0  # seconds the sum waits for one worker's samples (else: its last ones)
# Beyond the request timeout, how long a worker may take to stop before it is killed.
STOP_GRACE = 30.0


def supervise(options: ServerConfig) -> int:
    """Run the supervisor and its workers until SIGTERM/SIGINT; returns the exit code."""
    return asyncio.run(Supervisor(options).run())


class Worker:
    """One worker slot: the process serving as worker `index` now (a new one after each
    restart) and the supervisor's end of its channel."""

    def __init__(self, index: int, settings: str) -> None:
        self.index = index
        self.settings = settings  # WorkerSettings as JSON
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.serving = asyncio.Event()
        self.restarts = 0

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, listener: socket.socket, supervisor: Supervisor) -> None:
        """Start the worker's process on listener, its channel and its settings."""
        self.serving = asyncio.Event()
        ours, theirs = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kext.server.worker", "--index", str(self.index),
                "--listen-fd", str(listener.fileno()), "--channel-fd", str(theirs.fileno()),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(listener.fileno(), theirs.fileno()),
                # Its own session: Ctrl-C reaches the supervisor only, which stops the workers
                # in order; and a worker never outlives a supervisor that was killed.
                start_new_session=True, preexec_fn=die_with_parent(),
            )
        finally:
            theirs.close()
        self.channel = await Channel.open(ours, {"serving": self._serving,
                                                 "gather": supervisor.gather})
        assert self.process.stdin is not None
        self.process.stdin.write(self.settings.encode())
        with contextlib.suppress(ConnectionError):  # it exited at once: wait() tells
            await self.process.stdin.drain()
        self.process.stdin.close()

    async def _serving(self, params: Any) -> None:
        log.info("worker %d serving (pid %d)", self.index, self.pid)
        self.serving.set()

    async def samples(self) -> Any:
        assert self.channel is not None
        return await self.channel.call("metrics", timeout=COLLECT_TIMEOUT)

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """The supervisor of options.serving.workers workers (see the module's docstring)."""

    def __init__(self, options: ServerConfig) -> None:
        self.options = options
        self.process = Process(options)
        self.sums = WorkerSums()
        self.workers: list[Worker] = []
        self.stopping = asyncio.Event()
        self.failed = asyncio.Event()  # a worker exited before kext was serving
        self.started = False
        self.stop_timeout = options.serving.request_timeout_seconds + STOP_GRACE

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        count = self.options.serving.workers
        try:
            certificates = await self.process.start()
            listener = self.process.listen()
            config = new_config(self.options, certificates, self.process.etcd).complete()
            logs = self.options.logging
            settings = [worker_settings(config, i, count, logs) for i in range(count)]
            self.workers = [Worker(i, s.to_json()) for i, s in enumerate(settings)]
            # What a worker will read must be what it was given (a config field JSON cannot
            # carry would otherwise fail, or change, in every worker).
            if WorkerSettings.from_json(self.workers[0].settings) != settings[0]:
                raise ValueError("the configuration does not come back whole from the JSON a "
                                 "worker reads: kext.server.worker cannot carry one of its "
                                 "fields")
            for worker in self.workers:
                await worker.start(listener, self)
        except Exception as exc:
            print(f"kext: {exc}", file=sys.stderr, flush=True)
            log.debug("start-up failed", exc_info=True)
            await self._stop(supervised=[])
            return 1
        supervised = [loop.create_task(self._supervise(w, listener)) for w in self.workers]
        waiters: list[asyncio.Future[Any]] = [
            asyncio.gather(*(w.serving.wait() for w in self.workers)),
            loop.create_task(self.failed.wait()),
            loop.create_task(self.stopping.wait()),
        ]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        if self.failed.is_set() and not self.stopping.is_set():
            print("kext: a worker exited while starting (its error is above)", file=sys.stderr,
                  flush=True)
            await self._stop(supervised)
            return 1
        if not self.stopping.is_set():
            self.started = True
            announce(self.options, certificates)
            pids = ", ".join(str(w.pid) for w in self.workers)
            out = sys.stderr if self.options.audit.log_path == "-" else sys.stdout
            print(f"  {count} workers (pids {pids}) on one port, supervised by pid "
                  f"{os.getpid()}", file=out, flush=True)
            await self.stopping.wait()
        await self._stop(supervised)
        return 0

    async def _supervise(self, worker: Worker, listener: socket.socket) -> None:
        """Wait for the worker to exit; start it again (after a back-off) until stopping."""
        loop = asyncio.get_running_loop()
        delay = BACKOFF_INITIAL
        while True:
            assert worker.process is not None
            began = loop.time()
            pid = worker.pid
            code = await worker.process.wait()
            self.sums.retire((worker.index, pid))
            if worker.channel is not None:
                worker.channel.close()
            if self.stopping.is_set():
                if code not in (0, -signal.SIGTERM):  # SIGTERM: what it was sent
                    log.warning("worker %d (pid %d) %s while stopping", worker.index, pid,
                                describe_exit(code))
                return
            if not self.started:
                log.error("worker %d (pid %d) %s before it was serving", worker.index, pid,
                          describe_exit(code))
                self.failed.set()
                return
            if loop.time() - began >= BACKOFF_RESET:
                delay = BACKOFF_INITIAL
            log.error("worker %d (pid %d) %s; starting it again in %gs", worker.index, pid,
                      describe_exit(code), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
                return  # stopping: no new worker
            delay = min(delay * 2, BACKOFF_MAX)
            try:
                await worker.start(listener, self)
            except OSError as exc:
                log.error("worker %d could not be started: %s", worker.index, exc)
                continue
            worker.restarts += 1
            self.sums.restarts.inc()
            log.info("worker %d started again (pid %d)", worker.index, worker.pid)

    async def gather(self, params: Any) -> Any:
        """The sum of every worker's metrics (and the supervisor's), as plain data. A worker
        that does not answer counts with the samples it last gave."""
        live = [(w, w.pid) for w in self.workers if w.alive and w.channel is not None]
        answers = await asyncio.gather(*(w.samples() for w, _ in live), return_exceptions=True)
        for (worker, pid), answer in zip(live, answers, strict=True):
            if isinstance(answer, BaseException):
                log.debug("worker %d gave no metrics: %s", worker.index, answer)
            elif worker.alive and worker.pid == pid:  # it did not exit meanwhile
                self.sums.update((worker.index, pid), parse_samples(answer))
        self.sums.workers.set(sum(w.alive for w in self.workers))
        return self.sums.families()

    async def _stop(self, supervised: list[asyncio.Task[None]]) -> None:
        """Drain: no new connections from this process's descriptor, SIGTERM to every
        worker, wait for them (killing those past stop_timeout), then the embedded etcd."""
        self.stopping.set()
        self.process.close_listener()
        if any(w.alive for w in self.workers):
            log.info("stopping %d workers", sum(w.alive for w in self.workers))
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        if supervised:
            _, pending = await asyncio.wait(supervised, timeout=self.stop_timeout)
            if pending:
                for worker in self.workers:
                    if worker.alive:
                        log.error("worker %d (pid %d) did not stop within %gs; killing it",
                                  worker.index, worker.pid, self.stop_timeout)
                    worker.signal(signal.SIGKILL)
                await asyncio.wait(pending)
        for worker in self.workers:  # workers started but not supervised (start-up failed)
            if worker.alive:
                assert worker.process is not None
                worker.signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(worker.process.wait(), self.stop_timeout)
                except TimeoutError:
                    worker.signal(signal.SIGKILL)
                    await worker.process.wait()
        await self.process.stop()  # the embedded etcd last, after every worker closed storage
        if self.workers:
            log.info("every worker has stopped")
