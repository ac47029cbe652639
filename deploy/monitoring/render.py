"""Render kext-dashboard.json's panels from a real kext, without Prometheus or Grafana: scrape
its /metrics every few seconds (while driving a mix of requests at it, unless --no-load),
evaluate each panel's PromQL over the scrapes with the small evaluator below (the subset the
dashboard uses: selectors with matchers, rate, increase, histogram_quantile, sum/max by, and
/ between two aggregations) and draw the panels with matplotlib.

    python deploy/monitoring/render.py --url https://127.0.0.1:8443 --ca var/certs/ca.crt \\
        --cert var/certs/admin.crt --key var/certs/admin.key --seconds 120 \\
        --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).with_name("kext-dashboard.json")
RATE_WINDOW = 20.0  # seconds: what $__rate_interval stands for here

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]


@dataclass
class Scrape:
    at: float
    samples: dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value)


# -- a PromQL subset


_TOKEN = re.compile(r'\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_:][\w:]*)|'
                    r'(?P<str>"(?:[^"\\]|\\.)*")|(?P<dur>\[[^\]]+\])|(?P<op>=~|!~|!=|[(){},=/]))')


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class Evaluator:
    """Evaluates one expression at one point of a list of scrapes."""

    def __init__(self, scrapes: list[Scrape], index: int) -> None:
        self.scrapes, self.index = scrapes, index

    def evaluate(self, expr: str) -> Vector:
        self.tokens = _tokens(expr.replace("$__rate_interval", f"{int(RATE_WINDOW)}s"))
        self.pos = 0
        value = self._binary()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos]} in {expr!r}")
        return value

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")

    def _take(self, value: str | None = None) -> str:
        text = self._peek()[1]
        if value is not None and text != value:
            raise ValueError(f"expected {value!r}, got {text!r}")
        self.pos += 1
        return text

    def _binary(self) -> Vector:
        left = self._term()
        while self._peek()[1] in ("/", "or"):
            op = self._take()
            right = self._term()
            if op == "or":
                left = {**right, **left}
                continue
            # one-to-one on identical label sets; the other side's empty set matches all
            left = {k: v / (right[k] if k in right else right.get(frozenset(), math.nan))
                    for k, v in left.items()}
            left = {k: v for k, v in left.items() if math.isfinite(v)}
        return left

    def _term(self) -> Vector:
        name = self._take()
        if name == "(":
            inner = self._binary()
            self._take(")")
            return inner
        if name == "vector":
            self._take("(")
            value = float(self._take())
            self._take(")")
            return {frozenset(): value}
        if name in ("sum", "max"):
            by = []
            if self._peek()[1] == "by":
                self._take("by")
                by = self._names()
            self._take("(")
            inner = self._binary()
            self._take(")")
            return _aggregate(inner, by, sum if name == "sum" else max)
        if name in ("rate", "increase"):
            self._take("(")
            series, window = self._range()
            self._take(")")
            return self._increase(series, window, per_second=name == "rate")
        if name == "histogram_quantile":
            self._take("(")
            q = float(self._take())
            self._take(",")
            inner = self._binary()
            self._take(")")
            return _quantile(q, inner)
        return self._at(self.index, name, self._matchers())

    def _names(self) -> list[str]:
        self._take("(")
        names = []
        while self._peek()[1] != ")":
            names.append(self._take())
            if self._peek()[1] == ",":
                self._take(",")
        self._take(")")
        return names

    def _matchers(self) -> list[tuple[str, str, str]]:
        matchers: list[tuple[str, str, str]] = []
        if self._peek()[1] != "{":
            return matchers
        self._take("{")
        while self._peek()[1] != "}":
            label, op, value = self._take(), self._take(), json.loads(self._take())
            matchers.append((label, op, value.replace("$job", ".*").replace("$instance", ".*")))
            if self._peek()[1] == ",":
                self._take(",")
        self._take("}")
        return matchers

    def _range(self) -> tuple[tuple[str, list[tuple[str, str, str]]], float]:
        name = self._take()
        matchers = self._matchers()
        window = self._take()  # "[20s]"
        return (name, matchers), float(window.strip("[]s"))

    def _at(self, index: int, name: str, matchers: list[tuple[str, str, str]]) -> Vector:
        out: Vector = {}
        for labels, value in self.scrapes[index].samples.get(name, []):
            if all(_matches(labels.get(k, ""), op, v) for k, op, v in matchers):
                out[frozenset(labels.items())] = value
        return out

    def _increase(self, series: tuple[str, list[tuple[str, str, str]]], window: float,
                  per_second: bool) -> Vector:
        now = self.scrapes[self.index].at
        first = next(i for i, s in enumerate(self.scrapes) if s.at >= now - window)
        if first == self.index:
            return {}
        start, end = self._at(first, *series), self._at(self.index, *series)
        span = now - self.scrapes[first].at
        return {k: (v - start.get(k, 0.0)) / (span if per_second else 1.0)
                for k, v in end.items()}


def _matches(actual: str, op: str, wanted: str) -> bool:
    if op == "=":
        return actual == wanted
    if op == "!=":
        return actual != wanted
    found = re.fullmatch(wanted, actual) is not None
    return found if op == "=~" else not found


def _aggregate(vector: Vector, by: list[str],
               combine: Callable[[list[float]], float]) -> Vector:
    groups: dict[Labels, list[float]] = {}
    for labels, value in vector.items():
        key = frozenset((k, v) for k, v in labels if k in by)
        groups.setdefault(key, []).append(value)
    return {k: combine(v) for k, v in groups.items()}


def _quantile(q: float, buckets: Vector) -> Vector:
    """histogram_quantile as Prometheus computes it: linear within the bucket."""
    series: dict[Labels, list[tuple[float, float]]] = {}
    for labels, value in buckets.items():
        le = dict(labels)["le"]
        key = frozenset((k, v) for k, v in labels if k != "le")
        series.setdefault(key, []).append((math.inf if le == "+Inf" else float(le), value))
    out: Vector = {}
    for key, points in series.items():
        points.sort()
        total = points[-1][1]
        if total <= 0:
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for bound, count in points:
            if count >= rank:
                if math.isinf(bound):
                    out[key] = lower
                else:
                    width = count - below
                    out[key] = lower + (bound - lower) * ((rank - below) / width if width else 1)
                break
            lower, below = bound, count
    return out


# -- scraping and load


def scrape(session: requests.Session, url: str) -> Scrape:
    text = session.get(f"{url}/metrics", timeout=10).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return Scrape(time.monotonic(), samples)


def drive(session: requests.Session, url: str, stop: threading.Event) -> None:
    """A mix of requests: writes, reads, lists, a few errors, short watches."""
    group = f"{url}/apis/example.kext.io/v1alpha1"
    base = f"{group}/namespaces/dashboard/widgets"
    i = 0
    while not stop.is_set():
        name = f"w-{uuid.uuid4().hex[:8]}"
        body = {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
                "metadata": {"name": name}, "spec": {"size": i % 5 + 1, "color": "blue"}}
        session.post(base, json=body, timeout=30)
        for _ in range(3):
            session.get(f"{base}/{name}", timeout=30)
        session.patch(f"{base}/{name}", json={"spec": {"size": 9}}, timeout=30,
                      headers={"Content-Type": "application/merge-patch+json"})
        if i % 4 == 0:
            session.get(base, timeout=30)
            session.get(f"{base}/missing-{i}", timeout=30)  # 404
            session.post(base, json=body, timeout=30)  # 409
        if i % 10 == 0:
            with session.get(f"{base}?watch=true&timeoutSeconds=2", stream=True,
                             timeout=30) as watch:
                for _ in watch.iter_lines():
                    pass
        if i % 3 == 0:
            session.delete(f"{base}/{name}", timeout=30)
        i += 1


def render(scrapes: list[Scrape], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] == "timeseries"]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(18, 3.1 * rows), squeeze=False)
    fig.patch.set_facecolor("#111217")
    start = scrapes[0].at
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.5)
        plotted = 0
        for target in panel["targets"]:
            lines: dict[str, list[tuple[float, float]]] = {}
            for index, point in enumerate(scrapes):
                for labels, value in Evaluator(scrapes, index).evaluate(target["expr"]).items():
                    legend = re.sub(r"\{\{(\w+)\}\}", lambda m, d=dict(labels): d.get(m[1], ""),
                                    target["legendFormat"])
                    if math.isfinite(value):
                        lines.setdefault(legend, []).append((point.at - start, value))
            for legend, points in sorted(lines.items())[:8]:
                ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2,
                        label=legend)
                plotted += 1
        if plotted:
            ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", edgecolor="#2c3235",
                      labelcolor="#d8d9da")
        else:
            ax.text(0.5, 0.5, "no data", color="#8e8e8e", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel(f"seconds  ({panel['fieldConfig']['defaults']['unit']})",
                      color="#8e8e8e", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{dashboard['title']} — rendered from {len(scrapes)} scrapes of a real kext",
                 color="#d8d9da", fontsize=13, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--every", type=float, default=3)
    parser.add_argument("--no-load", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args()

    def new_session() -> requests.Session:
        session = requests.Session()
        session.verify, session.cert, session.trust_env = args.ca, (args.cert, args.key), False
        return session

    session = new_session()
    stop = threading.Event()
    workers = [] if args.no_load else [
        threading.Thread(target=drive, args=(new_session(), args.url, stop), daemon=True)
        for _ in range(3)]
    for worker in workers:
        worker.start()
    scrapes = []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        scrapes.append(scrape(session, args.url))
        time.sleep(args.every)
    stop.set()
    render(scrapes, args.out)
    print(f"wrote {args.out} from {len(scrapes)} scrapes")


if __name__ == "__main__":
    main()
