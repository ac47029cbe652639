"""The API reference as one static HTML page: no external assets, no JavaScript, a table of
contents, and an anchor on every kind and every field."""

from __future__ import annotations

from html import escape
from itertools import groupby
from urllib.parse import quote

import yaml

from kext.docs.model import Fact, Field, KindDoc, Rule, facts

_STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da;
        --warn: #9a3412; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); display: flex; align-items: flex-start; }
nav { position: sticky; top: 0; width: 250px; flex: none; max-height: 100vh; overflow: auto;
      padding: 20px 16px; border-right: 1px solid var(--line); background: var(--soft); }
nav h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; margin: 0 0 8px;
         color: var(--muted); }
nav ul { list-style: none; margin: 0; padding: 0; }
nav li { margin: 2px 0; }
nav ul ul { padding-left: 12px; margin-bottom: 8px; }
nav .group { font-weight: 600; }
main { flex: 1; min-width: 0; padding: 20px 32px 64px; max-width: 1180px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2.group { font-size: 22px; border-bottom: 2px solid var(--line); padding-bottom: 4px;
           margin-top: 40px; }
section.kind { margin: 24px 0 48px; }
h3 { font-size: 20px; margin: 0 0 6px; }
h3 .gv { font-weight: 400; color: var(--muted); font-size: 15px; margin-left: 8px; }
h4 { font-size: 15px; margin: 24px 0 8px; }
p.lead { color: var(--muted); margin-top: 0; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: var(--soft); border-radius: 4px; padding: 1px 4px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
      padding: 12px 16px; overflow: auto; }
pre code { background: none; padding: 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 12px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.name .parent { color: var(--muted); }
td.name a { color: var(--fg); font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
            font-size: 13px; }
td.name b { font-weight: 600; }
tr:target { background: #fff8c5; }
.required { color: var(--warn); font-size: 12px; font-weight: 600; margin-left: 6px;
             white-space: nowrap; }
.type { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
.format { color: var(--muted); }
ul.checks { margin: 0; padding: 0; list-style: none; }
ul.checks li + li { margin-top: 4px; }
table.fields { table-layout: fixed; }
table.fields td { overflow-wrap: break-word; }
.rule .label { font-size: 12px; font-weight: 600; color: var(--muted); }
.rule .message { display: block; color: var(--muted); }
"""


def render_html(docs: list[KindDoc], source: str) -> str:
    """The whole page for these kinds (grouped by API group, in the order given)."""
    groups = [(group, list(kinds)) for group, kinds in groupby(docs, key=lambda d: d.group)]
    toc = "".join(
        f'<li><a class="group" href="#{_href(_group_anchor(group))}">{escape(group)}</a><ul>'
        + "".join(f'<li><a href="#{_href(d.anchor)}">{escape(d.kind)}</a> '
                  f'<span class="format">{escape(d.version.name)}</span></li>' for d in kinds)
        + "</ul></li>"
        for group, kinds in groups)
    kinds_word = "kind" if len(docs) == 1 else "kinds"
    groups_word = "group" if len(groups) == 1 else "groups"
    body = "".join(
        f'<h2 class="group" id="{escape(_group_anchor(group))}">{escape(group)}</h2>'
        + "".join(_kind(d) for d in kinds)
        for group, kinds in groups)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>API reference</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<nav><h2>Contents</h2><ul>{toc}</ul></nav>\n'
        f"<main>\n<h1>API reference</h1>\n"
        f'<p class="lead">{len(docs)} {kinds_word} in {len(groups)} API {groups_word}, from the '
        f"resources declared in <code>{escape(source)}</code> (written by "
        f"<code>kext docs</code>).</p>\n{body}</main>\n</body>\n</html>\n"
    )


def _group_anchor(group: str) -> str:
    return f"group-{group}"


def _href(anchor: str) -> str:
    return quote(anchor, safe="./-_*")


def _kind(doc: KindDoc) -> str:
    parts = [
        f'<section class="kind" id="{escape(doc.anchor)}">',
        f'<h3><a href="#{_href(doc.anchor)}">{escape(doc.kind)}</a>'
        f'<span class="gv">{escape(doc.api_version)}</span></h3>',
    ]
    if doc.description:
        parts.append(f"<p>{escape(doc.description)}</p>")
    parts.append('<dl class="facts">' + "".join(_fact(f) for f in facts(doc)) + "</dl>")
    parts.append("<h4>Fields</h4>")
    parts.append(
        '<table class="fields"><colgroup><col style="width:25%"><col style="width:11%">'
        '<col style="width:8%"><col style="width:24%"><col></colgroup>'
        "<thead><tr><th>Field</th><th>Type</th><th>Default</th><th>Validation</th>"
        "<th>Description</th></tr></thead><tbody>"
        + "".join(_field(doc, f) for f in doc.fields) + "</tbody></table>")
    if doc.rules:
        parts.append("<h4>Validation rules on the object</h4>")
        parts.append('<ul class="checks">' + "".join(f"<li>{_rule(r)}</li>" for r in doc.rules)
                     + "</ul>")
    if doc.printer_columns:
        parts.append("<h4>Printer columns</h4><p>What <code>kubectl get "
                     f"{escape(doc.definition.plural)}</code> shows besides the name.</p>")
        rows = "".join(
            f"<tr><td>{escape(c.name)}</td><td class=\"type\">{escape(c.type)}"
            f"{_format(c.format)}</td><td><code>{escape(c.json_path)}</code></td>"
            f"<td>{c.priority}</td><td>{escape(c.description)}</td></tr>"
            for c in doc.printer_columns)
        parts.append("<table><thead><tr><th>Name</th><th>Type</th><th>JSONPath</th>"
                     f"<th>Priority</th><th>Description</th></tr></thead><tbody>{rows}"
                     "</tbody></table>")
    example = yaml.safe_dump(doc.example, sort_keys=False, width=100)
    parts.append("<h4>Example</h4><p>Built from the schema's defaults.</p>"
                 f"<pre><code>{escape(example)}</code></pre>")
    parts.append("</section>")
    return "\n".join(parts)


def _fact(fact: Fact) -> str:
    shown = ", ".join(f"<code>{escape(v)}</code>" if fact.code else escape(v)
                      for v in fact.values)
    return f"<dt>{escape(fact.label)}</dt><dd>{shown}</dd>"


def _format(fmt: str) -> str:
    return f' <span class="format">({escape(fmt)})</span>' if fmt else ""


def _field(doc: KindDoc, field: Field) -> str:
    anchor = doc.field_anchor(field)
    required = '<span class="required">required</span>' if field.required else ""
    checks = [f"one of: {', '.join(f'<code>{escape(v)}</code>' for v in field.enum)}"
              ] if field.enum else []
    checks += [f"<code>{escape(c)}</code>" for c in field.constraints]
    checks += [_rule(r) for r in field.rules]
    shown_checks = ('<ul class="checks">' + "".join(f"<li>{c}</li>" for c in checks)
                    + "</ul>") if checks else ""
    default = f"<code>{escape(field.default)}</code>" if field.default else ""
    indent = 8 + 16 * field.depth
    return (
        f'<tr id="{escape(anchor)}"><td class="name" style="padding-left:{indent}px">'
        f'<a href="#{_href(anchor)}"><span class="parent">{escape(field.parent)}</span>'
        f"<b>{escape(field.name)}</b></a>{required}</td>"
        f'<td class="type">{escape(field.type)}{_format(field.format)}</td>'
        f'<td>{default}</td><td class="checks">{shown_checks}</td>'
        f"<td>{escape(field.description)}</td></tr>"
    )


def _rule(rule: Rule) -> str:
    label = "CEL transition rule" if rule.transition else "CEL rule"
    extra = []
    if rule.message:
        extra.append(f"message: {escape(rule.message)}")
    if rule.message_expression:
        extra.append(f"messageExpression: <code>{escape(rule.message_expression)}</code>")
    if rule.reason:
        extra.append(f"reason: {escape(rule.reason)}")
    if rule.field_path:
        extra.append(f"fieldPath: <code>{escape(rule.field_path)}</code>")
    if rule.optional_old_self:
        extra.append("optionalOldSelf")
    shown = "".join(f'<span class="message">{e}</span>' for e in extra)
    return (f'<span class="rule"><span class="label">{label}</span> '
            f"<code>{escape(rule.rule)}</code>{shown}</span>")
