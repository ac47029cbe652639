"""Closed-loop load: c workers, each issuing one operation at a time, for a duration or until a
work list is used up; per-operation latencies, throughput and the CPU each process spent."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.processes import busy_cpu_seconds, cpu_seconds

# One operation: (worker index, sequence number) -> whether it succeeded.
Operation = Callable[[int, int], Awaitable[bool]]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class CPUMeter:
    """CPU seconds used by named processes between start() and stop(), as cores busy, and by
    everything else on the machine ("other": a run that shared the CPUs shows it here).

    A name may stand for several processes (kext with workers: the supervisor and its
    workers), summed; `parts` are also shown on their own (each worker) and are not counted
    again in "other"."""

    def __init__(self, pids: Mapping[str, int | Sequence[int] | None],
                 parts: Mapping[str, int] | None = None) -> None:
        self.pids = {name: (pid,) if isinstance(pid, int) else tuple(pid)
                     for name, pid in pids.items() if pid}
        self.parts = {name: (pid,) for name, pid in (parts or {}).items()}
        self._start: dict[str, float] = {}
        self._machine = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._machine = busy_cpu_seconds()
        self._start = {name: sum(map(cpu_seconds, pids))
                       for name, pids in (*self.pids.items(), *self.parts.items())}

    def stop(self) -> dict[str, float]:
        """Cores used by each process over the interval (1.0 = one core fully busy)."""
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        used: dict[str, float] = {}
        for name, pids in (*self.pids.items(), *self.parts.items()):
            try:
                used[name] = round((sum(map(cpu_seconds, pids)) - self._start[name]) / elapsed,
                                   3)
            except OSError:  # the process is gone
                continue
        machine = (busy_cpu_seconds() - self._machine) / elapsed
        counted = sum(v for name, v in used.items() if name not in self.parts)
        used["other"] = round(max(0.0, machine - counted), 3)
        return used


@dataclass
class Stats:
    """The outcome of one load run."""

    ops: int
    errors: int
    duration_s: float
    latencies: list[float] = field(repr=False)  # seconds, successful operations only
    cpu: dict[str, float] = field(default_factory=dict)
    first_error: str = ""

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        ms = 1000.0
        return {
            "ops": self.ops,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "ops_per_s": round(self.ops_per_s, 1),
            "p50_ms": round(percentile(ordered, 50) * ms, 3),
            "p90_ms": round(percentile(ordered, 90) * ms, 3),
            "p99_ms": round(percentile(ordered, 99) * ms, 3),
            "max_ms": round(ordered[-1] * ms, 3) if ordered else math.nan,
            "cpu_cores": self.cpu,
            # what the client could drive with one core of its own at this cost per request
            "client_ceiling_ops_per_s": round(self.ops_per_s / self.cpu["client"], 1)
            if self.cpu.get("client") else None,
            **({"first_error": self.first_error} if self.first_error else {}),
        }


async def drive(
    operation: Operation,
    concurrency: int,
    *,
    duration: float | None = None,
    total: int | None = None,
    meter: CPUMeter | None = None,
    progress: Callable[[int], None] | None = None,
) -> Stats:
    """Run operation from `concurrency` workers until `duration` seconds have passed (no new
    operation starts after that; those in flight finish) or `total` operations were started.

    Each operation gets a distinct sequence number 0, 1, 2, ... A failed operation (False or
    an exception) counts as an error; its latency is not recorded."""
    if duration is None and total is None:
        raise ValueError("give a duration or a total")
    latencies: list[float] = []
    errors = 0
    first_error = ""
    next_seq = 0
    clock = time.perf_counter
    start = clock()
    deadline = start + duration if duration is not None else math.inf
    limit = total if total is not None else math.inf
    last_end = start

    async def worker(index: int) -> None:
        nonlocal next_seq, errors, first_error, last_end
        while next_seq < limit:
            t0 = clock()
            if t0 >= deadline:
                return
            seq = next_seq
            next_seq += 1
            try:
                ok = await operation(index, seq)
            except Exception as exc:
                ok = False
                if not first_error:
                    first_error = f"{type(exc).__name__}: {exc}"
            t1 = clock()
            last_end = t1
            if ok:
                latencies.append(t1 - t0)
            else:
                errors += 1

    ticker = None
    if progress is not None:
        async def tick() -> None:
            while True:
                await asyncio.sleep(0.5)
                progress(len(latencies) + errors)

        ticker = asyncio.get_running_loop().create_task(tick())
    if meter is not None:
        meter.start()
    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        if ticker is not None:
            ticker.cancel()
    cpu = meter.stop() if meter is not None else {}
    return Stats(ops=len(latencies), errors=errors, duration_s=last_end - start,
                 latencies=latencies, cpu=cpu, first_error=first_error)
