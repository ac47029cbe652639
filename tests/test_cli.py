"""The `kext` command as a user reads it: `--version`, and `--help` describing every flag and
argument of every command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kext import __version__
from kext.api.discovery import KUBE_VERSION

KEXT = Path(sys.executable).parent / "kext"


def kext(*args: str) -> str:
    done = subprocess.run([str(KEXT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_version() -> None:
    assert kext("--version").strip() == (
        f"kext {__version__} (serves the Kubernetes API as kube-apiserver {KUBE_VERSION} does)")


def _commands(help_text: str, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The commands a help text lists under its positional COMMAND/WHAT argument."""
    listing = re.search(r"positional arguments:\n  [A-Z]+\n((?:    .*\n|      .*\n)+)", help_text)
    if listing is None:
        return []
    names = re.findall(r"^    ([a-z][\w-]*)", listing.group(1), re.MULTILINE)
    return [(*prefix, name) for name in names]


def _undescribed(help_text: str) -> list[str]:
    """The flags and arguments of a help text that carry no description."""
    missing = []
    for block in re.findall(r"(?:options|positional arguments):\n((?:  .*\n?)+)", help_text):
        entries = re.split(r"\n(?=  \S)", block.rstrip("\n"))
        for entry in entries:
            first, *rest = entry.split("\n")
            spec, gap, text = first.strip().partition("  ")
            if not (gap and text.strip()) and not any(line.strip() for line in rest):
                missing.append(spec)
    return missing


def test_every_flag_of_every_command_is_described() -> None:
    top = kext("--help")
    commands = _commands(top)
    assert {c[0] for c in commands} >= {"check", "certs", "manifests", "init", "create", "docs"}
    queue = [(), *commands]
    seen = []
    while queue:
        command = queue.pop(0)
        text = kext(*command, "--help")
        seen.append(" ".join(command) or "kext")
        assert _undescribed(text) == [], f"kext {' '.join(command)} --help:\n{text}"
        queue.extend(c for c in _commands(text, command) if c not in queue and c != command)
    assert "create resource" in seen
