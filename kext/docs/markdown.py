"""The API reference as one Markdown file (GitHub-flavoured: tables, inline anchors)."""

from __future__ import annotations

from itertools import groupby

import yaml

from kext.docs.model import Fact, Field, KindDoc, Rule, facts


def render_markdown(docs: list[KindDoc], source: str) -> str:
    """The reference for these kinds (grouped by API group, in the order given)."""
    groups = [(group, list(kinds)) for group, kinds in groupby(docs, key=lambda d: d.group)]
    kinds_word = "kind" if len(docs) == 1 else "kinds"
    groups_word = "group" if len(groups) == 1 else "groups"
    lines = [
        "# API reference",
        "",
        f"{len(docs)} {kinds_word} in {len(groups)} API {groups_word}, from the resources "
        f"declared in `{source}` (written by `kext docs`).",
        "",
    ]
    for group, kinds in groups:
        lines.append(f"- **{group}**")
        lines += [f"  - [{d.kind} {d.version.name}](#{d.anchor})" for d in kinds]
    for group, kinds in groups:
        lines += ["", f"## {group}"]
        for doc in kinds:
            lines += _kind(doc)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text safe inside a table cell: pipes escaped, one line."""
    return " ".join(text.replace("|", "\\|").split())


def _code(text: str) -> str:
    """Inline code holding any text (a longer fence when the text has backticks)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _kind(doc: KindDoc) -> list[str]:
    lines = ["", f'<a id="{doc.anchor}"></a>', "", f"### {doc.kind} ({doc.api_version})", ""]
    if doc.description:
        lines += [doc.description, ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {f.label} | {_fact(f)} |" for f in facts(doc)]
    lines += ["", "#### Fields", "",
              "| Field | Type | Default | Validation | Description |",
              "|---|---|---|---|---|"]
    lines += [_field(f) for f in doc.fields]
    if doc.rules:
        lines += ["", "#### Validation rules on the object", ""]
        lines += [f"- {_rule(r)}" for r in doc.rules]
    if doc.printer_columns:
        lines += ["", "#### Printer columns", "",
                  f"What `kubectl get {doc.definition.plural}` shows besides the name.", "",
                  "| Name | Type | JSONPath | Priority | Description |", "|---|---|---|---|---|"]
        for c in doc.printer_columns:
            shown_type = f"{c.type} ({c.format})" if c.format else c.type
            lines.append(f"| {_cell(c.name)} | {shown_type} | {_cell(_code(c.json_path))} | "
                         f"{c.priority} | {_cell(c.description)} |")
    example = yaml.safe_dump(doc.example, sort_keys=False, width=100)
    lines += ["", "#### Example", "", "Built from the schema's defaults.", "", "```yaml",
              example.rstrip("\n"), "```"]
    return lines


def _fact(fact: Fact) -> str:
    return _cell(", ".join(_code(v) if fact.code else v for v in fact.values))


def _field(field: Field) -> str:
    name = _code(field.path) + (" **required**" if field.required else "")
    shown_type = f"{field.type} ({field.format})" if field.format else field.type
    checks = [f"one of: {', '.join(_code(v) for v in field.enum)}"] if field.enum else []
    checks += [_code(c) for c in field.constraints]
    checks += [_rule(r) for r in field.rules]
    default = _code(field.default) if field.default else ""
    return (f"| {_cell(name)} | {_cell(shown_type)} | {_cell(default)} | "
            f"{_cell('<br>'.join(checks))} | {_cell(field.description)} |")


def _rule(rule: Rule) -> str:
    label = "CEL transition rule" if rule.transition else "CEL rule"
    shown = f"{label} {_code(rule.rule)}"
    if rule.message:
        shown += f": {rule.message}"
    if rule.message_expression:
        shown += f"; messageExpression {_code(rule.message_expression)}"
    if rule.reason:
        shown += f"; reason {rule.reason}"
    if rule.field_path:
        shown += f"; fieldPath {_code(rule.field_path)}"
    if rule.optional_old_self:
        shown += "; optionalOldSelf"
    return shown
