"""What `kext init` and `kext create resource` share: the templates shipped with kext, and
writing new files without ever overwriting one."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from string import Template


class ScaffoldError(Exception):
    """Nothing was written; `problems` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def render(template: str, **values: str) -> str:
    """The template file kext/scaffold/templates/<template> with its ${name} fields filled."""
    text = resources.files("kext.scaffold").joinpath("templates", template).read_text("utf-8")
    return Template(text).substitute(values)


def write_new(files: dict[Path, str]) -> None:
    """Write every file, creating directories as needed; refuse (writing nothing) when any of
    them exists already."""
    existing = [path for path in files if path.exists() or path.is_symlink()]
    if existing:
        raise ScaffoldError([f"{path}: already exists; kext does not overwrite files"
                             for path in existing])
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)


def replace_text(path: Path, text: str) -> None:
    """Replace the file's text in one step (a crash leaves the old or the new file), keeping
    its permissions."""
    mode = path.stat().st_mode & 0o7777
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
