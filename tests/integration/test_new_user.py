"""What a new user would run into, through real kext processes: a second kext on the embedded
etcd's data dir is refused at once, in one line; kext says which etcd it started; a mangled
continue token is refused in kube-apiserver's words."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kext_process import REPO, KextProcess, free_port, start_kext, status_of, write_config

EMBEDDED_IN_USE = ("kext: another kext (pid {pid}) is using the embedded etcd's data dir "
                   "{data_dir}: stop it first, or give this kext another "
                   "storage.embedded.dataDir")


def embedded_storage(data_dir: Path) -> dict[str, object]:
    return {"prefix": "/registry", "etcd": {"endpoints": []},
            "embedded": {"dataDir": str(data_dir)}}


def test_a_second_kext_on_the_same_data_dir_is_refused_at_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "etcd"
    first = start_kext(tmp_path / "first", "", storage=embedded_storage(data_dir))
    try:
        # kext says which etcd it started, by version and path.
        assert re.search(r"embedded etcd \d+\.\d+\.\d+ \(/\S+/etcd\) serving "
                         r"http://127\.0\.0\.1:\d+ \(pid \d+\)", first.log()), first.log()

        workdir = tmp_path / "second"
        workdir.mkdir()
        config = write_config(workdir, free_port(), "", storage=embedded_storage(data_dir))
        began = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "kext", "--config", str(config)],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
        assert second.returncode == 1, second.stderr
        assert took < 15, f"the second kext took {took:.0f}s to give up"  # etcd's is 30s
        expected = EMBEDDED_IN_USE.format(pid=first.process.pid, data_dir=data_dir)
        assert second.stderr.splitlines().count(expected) == 1, second.stderr
        assert "Traceback" not in second.stderr

        # The first is undisturbed.
        assert first.session().get(f"{first.url}/readyz", timeout=5).status_code == 200
    finally:
        assert first.stop() == 0


@pytest.mark.parametrize(("token", "why"), [
    (base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="),
     "invalid character '\u00ff' looking for beginning of value"),
    ("not-a-token!", "illegal base64 data at input byte 11"),
])
def test_a_mangled_continue_token_is_400_in_kubes_words(
    kext: KextProcess, token: str, why: str
) -> None:
    response = kext.session().get(
        f"{kext.url}/apis/example.kext.io/v1alpha1/widgets",
        params={"limit": "1", "continue": token}, timeout=10,
    )
    assert response.status_code == 400
    status = status_of(response)
    assert status["reason"] == "BadRequest"
    assert status["message"] == f"invalid continue token: continue key is not valid: {why}"
