"""`kext docs --config FILE --out DIR`: an API reference from the declared resources, as
apiserver-boot's `build docs` writes one: DIR/index.md and one static DIR/index.html."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from kext.config import ConfigError, load_config
from kext.docs.markdown import render_markdown
from kext.docs.model import KindDoc, document, example_object
from kext.docs.page import render_html

EXIT_BAD_CONFIG = 2

__all__ = ["KindDoc", "document", "example_object", "load_docs", "render_html",
           "render_markdown", "run_docs", "write_docs"]


def load_docs(config_path: str) -> list[KindDoc]:
    """Every served group/version/kind of the configuration's resources, sorted by group and
    kind. Raises ConfigError as load_config does."""
    config = load_config(config_path)
    manifests = _manifests(config_path)
    docs = [doc for definition in config.resources
            for doc in document(definition, manifests.get(definition.name, {}))]
    return sorted(docs, key=lambda d: (d.group, d.kind))


def write_docs(config_path: str, out: Path) -> list[Path]:
    """Write out/index.md and out/index.html (creating out); returns their paths."""
    docs = load_docs(config_path)
    out.mkdir(parents=True, exist_ok=True)
    written = [(out / "index.md", render_markdown(docs, config_path)),
               (out / "index.html", render_html(docs, config_path))]
    for path, text in written:
        path.write_text(text, encoding="utf-8")
    return [path for path, _ in written]


def run_docs(config_path: str, out: str) -> int:
    """`kext docs`: write the reference, or print the configuration's problems (exit 2)."""
    try:
        written = write_docs(config_path, Path(out))
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_CONFIG
    except OSError as error:
        print(f"{out}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for path in written:
        print(f"wrote {path}")
    return 0


def _manifests(config_path: str) -> dict[str, dict[str, Any]]:
    """The CRD manifests of a configuration that load_config accepted, by CRD name, as
    written (for what ResourceDefinition does not keep)."""
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    found: dict[str, dict[str, Any]] = {}
    for item in config.get("resources") or []:
        if set(item) == {"file"}:
            with open(item["file"], encoding="utf-8") as f:
                documents = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
        else:
            documents = [item["inline"] if set(item) == {"inline"} else item]
        for manifest in documents:
            found[manifest["metadata"]["name"]] = manifest
    return found
