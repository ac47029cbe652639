"""`--profile`: sample the kext process with py-spy while chosen runs go on, and summarise
where its CPU time goes (the raw collapsed stacks are kept for flame graph tools)."""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
SAMPLE_RATE = 100  # per second; py-spy samples without stopping kext (--nonblocking)


def find_py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


class Profiler:
    """`with Profiler(pid, path): ...` records pid's stacks into path (py-spy raw format)."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid, self.path = pid, path
        self.process: subprocess.Popen[bytes] | None = None
        self.error = ""

    def __enter__(self) -> Profiler:
        binary = find_py_spy()
        if binary is None:
            self.error = "py-spy not found (pip install py-spy)"
            return self
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(self.pid), "--format", "raw", "--output",
             str(self.path), "--rate", str(SAMPLE_RATE), "--nonblocking"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        if not self.path.exists():
            self.error = f"py-spy wrote nothing: {stderr.decode(errors='replace')[-300:]}"

    def summary(self, top: int = 15) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        return summarize(self.path.read_text(errors="replace"), top)


def _parse(frame: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame "function (file:line)"."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["func"], match["file"]


def _area(file: str) -> str:
    """What a source file belongs to: kext.<package>, twisted.<package>, or the library."""
    parts = file.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    if not parts or not parts[0]:
        return "?"
    if parts[0] in ("kext", "twisted") and len(parts) > 2:
        return f"{parts[0]}.{parts[1]}"
    if parts[0].startswith("<frozen"):
        return "python (frozen)"
    return parts[0].removesuffix(".py")


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Samples by leaf function (self time), by function anywhere on the stack (inclusive
    time, kext's functions only) and by area (self time per package)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_parse(f) for f in stack.split(";")]
        func, file = frames[-1]
        own[f"{func} ({file})"] += count
        areas[_area(file)] += count
        for name in {f"{f} ({p})" for f, p in frames if p.startswith("kext/")}:
            inclusive[name] += count

    def share(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(top)]

    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_percent": share(own),
        "area_self_percent": share(areas),
        "kext_inclusive_percent": share(inclusive),
    }
