"""results.json → report.md and PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PLOTS = {
    "throughput": "throughput.png",
    "latency": "latency.png",
    "ratio": "ratio.png",
    "watch": "watch.png",
    "client": "client.png",
}
DPI = 100
COLOR = {"kext": "tab:blue", "etcd": "tab:orange"}
STYLE = {"kext": "o-", "etcd": "s--"}


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _ratio(value: Any) -> str:
    return "n/a" if value is None else f"**{value:.2f}x**"


def _mib(value: Any) -> str:
    return "n/a" if value is None else f"{value / 1024 / 1024:.1f} MiB"


def _cpu(stats: dict[str, Any], name: str) -> str:
    value = (stats.get("cpu_cores") or {}).get(name)
    return "n/a" if value is None else f"{value:.2f}"


def markdown(results: dict[str, Any], image_prefix: str = "") -> str:
    """The Markdown report; images are referenced as image_prefix + file name."""
    meta = results["meta"]
    size = meta["size"]
    versions = meta["versions"]
    machine = meta["machine"]
    config = meta.get("config", {})
    out: list[str] = []
    w = out.append
    w(f"# kext benchmark - {meta['timestamp']} ({size['name']} size)\n")
    w("Every figure is a ratio **kext / raw etcd**, both measured in this run on this machine "
      "with the same client concurrency. Throughput ratios above 1 favour kext; latency "
      "ratios below 1 favour kext.\n")
    w(f"- Machine: {machine['cpu']}, {machine['cpus_usable']} CPUs usable, "
      f"{machine['memory']} RAM, Linux {machine['kernel']}")
    w(f"- Versions: Python {versions['python']}, kext {versions['kext']} "
      f"({versions.get('kext_git', '')}), etcd {config.get('etcd', {}).get('version', '?')}, "
      f"Twisted {versions['Twisted']}, aetcd {versions['aetcd']}, grpcio {versions['grpcio']}, "
      f"orjson {versions['orjson']}")
    w(f"- Size: concurrency {', '.join(map(str, size['levels']))}; {size['duration']} s per "
      f"timed run after {size['warmup']} s warm-up; watch fan-out "
      f"{', '.join(map(str, size['watchers']))} watchers at {size['watch_rate']:g} writes/s for "
      f"{size['watch_duration']} s; wall time {meta.get('wall_seconds', '?')} s")
    if config:
        w(f"- etcd: {config['etcd'].get('flags', config['etcd']['endpoint'])}; kext: "
          f"{'started by the suite' if config['kext']['started_by_suite'] else 'given'}, "
          f"one process; client: {config.get('client', '')}")
    other = _other_cpu(results)
    if other:
        w(f"- Other processes on the machine used {other[0]:.2f} cores on average during the "
          f"runs (at most {other[1]:.2f}): figures from runs with a high value are noisy.")
    w("- CPU columns: cores busy during the kext run (1.00 = one core) for kext, etcd, the "
      "load-generating client, and every other process on the machine (noise: should be ~0).\n")

    w("## Requests: throughput and latency\n")
    w("| scenario | c | kext ops/s | etcd ops/s | ratio | kext p50 ms | etcd p50 ms | p50 ratio "
      "| kext p99 ms | etcd p99 ms | p99 ratio | cpu kext / etcd / client / other |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for scenario in results["scenarios"]:
        for row in scenario["levels"]:
            k, e, r = row["kext"], row["etcd"], row["ratio"]
            errors = f" ({k['errors']} errors)" if k["errors"] else ""
            w(f"| {scenario['name']} | {row['concurrency']} | {_num(k['ops_per_s'])}{errors} | "
              f"{_num(e['ops_per_s'])} | {_ratio(r['ops_per_s'])} | {_num(k['p50_ms'], 2)} | "
              f"{_num(e['p50_ms'], 2)} | {_ratio(r['p50'])} | {_num(k['p99_ms'], 2)} | "
              f"{_num(e['p99_ms'], 2)} | {_ratio(r['p99'])} | {_cpu(k, 'kext')} / "
              f"{_cpu(k, 'etcd')} / {_cpu(k, 'client')} / {_cpu(k, 'other')} |")
    w("")
    if any("aggregator" in row for s in results["scenarios"] for row in s["levels"]):
        w("## The aggregator's path: HTTP/2, front-proxy certificate, X-Remote-* headers\n")
        w(f"{config.get('aggregator', '')}\n")
        w("| scenario | c | h2 ops/s | etcd ops/s | h2 ratio | (HTTP/1.1 ratio) | h2 p50 ms | "
          "h2 p99 ms | etcd p99 ms | p99 ratio | cpu kext / etcd / client / other | client "
          "ceiling ops/s |")
        w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for scenario in results["scenarios"]:
            for row in scenario["levels"]:
                a = row.get("aggregator")
                if a is None:
                    continue
                e, r = row["etcd"], row["aggregator_ratio"]
                errors = f" ({a['errors']} errors)" if a["errors"] else ""
                w(f"| {scenario['name']} | {row['concurrency']} | {_num(a['ops_per_s'])}{errors}"
                  f" | {_num(e['ops_per_s'])} | {_ratio(r['ops_per_s'])} | "
                  f"{_ratio(row['ratio']['ops_per_s'])} | {_num(a['p50_ms'], 2)} | "
                  f"{_num(a['p99_ms'], 2)} | {_num(e['p99_ms'], 2)} | {_ratio(r['p99'])} | "
                  f"{_cpu(a, 'kext')} / {_cpu(a, 'etcd')} / {_cpu(a, 'client')} / "
                  f"{_cpu(a, 'other')} | {_num(a.get('client_ceiling_ops_per_s'))} |")
        w("")
    for scenario in results["scenarios"]:
        w(f"- **{scenario['name']}**: {scenario['title']}")
    w("")
    w(f"![throughput]({image_prefix}{PLOTS['throughput']})\n")
    w(f"![latency]({image_prefix}{PLOTS['latency']})\n")
    w(f"![ratio]({image_prefix}{PLOTS['ratio']})\n")

    watch = results.get("watch") or {}
    w("## Watch fan-out\n")
    if watch.get("method"):
        w(f"{watch['method']}; {watch['write_rate']:g} writes/s for {watch['write_seconds']} s.\n")
    if not watch.get("available", False):
        w(f"**kext: not available** - {watch.get('note', '')}. The etcd figures below are "
          f"measured all the same; kext's and the ratios are left empty.\n")
    w("| watchers | kext events/s | etcd events/s | ratio | kext delivered | etcd delivered | "
      "kext p50 ms | etcd p50 ms | p50 ratio | kext p99 ms | etcd p99 ms | p99 ratio | "
      "cpu kext / etcd / client / other (kext run) |")
    w("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in watch.get("levels", []):
        k, e = row.get("kext") or {}, row["etcd"]
        r = row.get("ratio") or {}
        w(f"| {row['watchers']} | {_num(k.get('events_per_s'))} | {_num(e['events_per_s'])} | "
          f"{_ratio(r.get('events_per_s'))} | "
          f"{_num(k.get('delivered_fraction'), 4) if k else 'n/a'} | "
          f"{_num(e['delivered_fraction'], 4)} | {_num(k.get('p50_ms'), 2)} | "
          f"{_num(e['p50_ms'], 2)} | {_ratio(r.get('p50'))} | {_num(k.get('p99_ms'), 2)} | "
          f"{_num(e['p99_ms'], 2)} | {_ratio(r.get('p99'))} | "
          + (" / ".join(_cpu(k, p) for p in ("kext", "etcd", "client", "other")) if k
             else "n/a") + " |")
    for row in watch.get("levels", []):
        a = row.get("aggregator")
        if a is None:
            continue
        if row is watch["levels"][0]:
            w("")
            w("Over the aggregator's path (HTTP/2: the watches are streams multiplexed on a few "
              "connections, the writer's creates share the first):\n")
            w("| watchers | connections | h2 events/s | ratio | delivered | h2 p50 ms | h2 p99 ms "
              "| p99 ratio | cpu kext / etcd / client / other |")
            w("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        r = row.get("aggregator_ratio") or {}
        w(f"| {row['watchers']} | {row.get('aggregator_connections', '?')} | "
          f"{_num(a.get('events_per_s'))} | {_ratio(r.get('events_per_s'))} | "
          f"{_num(a.get('delivered_fraction'), 4)} | {_num(a.get('p50_ms'), 2)} | "
          f"{_num(a.get('p99_ms'), 2)} | {_ratio(r.get('p99'))} | "
          + " / ".join(_cpu(a, p) for p in ("kext", "etcd", "client", "other")) + " |")
    writer_rows = [(path, watch.get(f"writer_alone_{path}")) for path in ("kext", "aggregator")]
    if any(alone for _, alone in writer_rows):
        w("")
        w("The writer's own creates (through kext) during the fan-out, against the writer "
          "alone (no watchers):\n")
        w("| path | alone p50 / p99 ms | " + " | ".join(
            f"{row['watchers']} watchers p50 / p99 ms" for row in watch.get("levels", []))
          + " |")
        w("|---|--:|" + "--:|" * len(watch.get("levels", [])))
        for path, alone in writer_rows:
            if not alone:
                continue
            cells = [f"{_num(alone.get('writer_p50_ms'), 2)} / "
                     f"{_num(alone.get('writer_p99_ms'), 2)}"]
            for row in watch.get("levels", []):
                run = row.get(path) or {}
                cells.append(f"{_num(run.get('writer_p50_ms'), 2)} / "
                             f"{_num(run.get('writer_p99_ms'), 2)}")
            w(f"| {path} | " + " | ".join(cells) + " |")
    w("")
    w(f"![watch]({image_prefix}{PLOTS['watch']})\n")

    memory = results.get("memory") or {}
    w("## Memory (resident size)\n")
    w("| what | kext | etcd | ratio |")
    w("|---|--:|--:|--:|")
    objects = memory.get("objects")
    if objects:
        w(f"| per 10,000 stored objects (measured with {objects['objects']:,}) | "
          f"{_mib(objects['kext_bytes_per_10k'])} | {_mib(objects['etcd_bytes_per_10k'])} | "
          f"{_ratio(objects.get('ratio'))} |")
    watchers = memory.get("watchers")
    if watchers:
        w(f"| per 1,000 idle watchers (measured with {watchers['watchers']:,}) | "
          f"{_mib(watchers['kext_bytes_per_1k'])} | {_mib(watchers['etcd_bytes_per_1k'])} | "
          f"{_ratio(watchers.get('ratio'))} |")
    idle = memory.get("idle_h2_streams")
    if idle:
        per = idle.get("kext_bytes_per_stream")
        w(f"| per idle HTTP/2 watch stream ({idle['held']:,} of {idle['streams']:,} held on "
          f"{idle.get('connections', '?')} connections) | "
          f"{'n/a' if per is None else f'{per / 1024:.1f} KiB'} | | |")
    w("")
    if objects and objects.get("kext_bytes_per_object") is not None:
        w(f"- per cached object: kext {objects['kext_bytes_per_object']:,} bytes, "
          f"{objects['raw_json_bytes_per_object']:,} bytes of raw JSON: "
          f"{_ratio(objects.get('kext_per_raw_json'))} the raw JSON size")
    if objects:
        w(f"- objects: {objects['note']}")
    if watchers:
        w(f"- watchers: {watchers['note']}"
          + (f" ({watchers['kext_note']})" if watchers.get("kext_note") else ""))
    w("")

    client = results.get("client") or {}
    w("## The client alone\n")
    w(f"{client.get('note', '')} The highest request rate any scenario reached through kext "
      f"is {_num(_best_kext_rate(results))} ops/s.\n")
    w("| c | trivial TLS req/s | p50 ms | p99 ms | client cpu | kext /healthz req/s | p50 ms "
      "| p99 ms | kext cpu |")
    w("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t, k in zip(client.get("trivial", []), client.get("kext_healthz", []), strict=False):
        w(f"| {t['concurrency']} | {_num(t['ops_per_s'])} | {_num(t['p50_ms'], 2)} | "
          f"{_num(t['p99_ms'], 2)} | {_cpu(t, 'client')} | {_num(k['ops_per_s'])} | "
          f"{_num(k['p50_ms'], 2)} | {_num(k['p99_ms'], 2)} | {_cpu(k, 'kext')} |")
    if client.get("trivial_h2"):
        w("")
        w("The same over HTTP/2 (the aggregator's client):\n")
        w("| c | trivial h2 req/s | p99 ms | client cpu | kext h2 /healthz req/s | p99 ms "
          "| kext cpu |")
        w("|--:|--:|--:|--:|--:|--:|--:|")
        for t, k in zip(client.get("trivial_h2", []), client.get("kext_healthz_h2", []),
                        strict=False):
            w(f"| {t['concurrency']} | {_num(t['ops_per_s'])} | {_num(t['p99_ms'], 2)} | "
              f"{_cpu(t, 'client')} | {_num(k['ops_per_s'])} | {_num(k['p99_ms'], 2)} | "
              f"{_cpu(k, 'kext')} |")
    w("")
    w(f"![client]({image_prefix}{PLOTS['client']})\n")

    workers = results.get("workers") or {}
    if workers.get("runs"):
        w("## serving.workers\n")
        w(f"{workers.get('note', '')}.\n")
        w("| scenario | workers | c | kext ops/s | p99 ms | kext/etcd | "
          "cpu kext / etcd / client / other | cpu per worker |")
        w("|---|--:|--:|--:|--:|--:|---|---|")
        for run in workers["runs"]:
            k = run["kext"]
            parts = " / ".join(f"{v:.2f}" for n, v in sorted(k.get("cpu_cores", {}).items())
                               if n.startswith("kext["))
            w(f"| {run['scenario']} | {run['workers']} | {run['concurrency']} | "
              f"{_num(k['ops_per_s'])} | {_num(k['p99_ms'], 2)} | "
              f"{_ratio(run['ratio_to_etcd'])} | "
              + " / ".join(_cpu(k, p) for p in ("kext", "etcd", "client", "other"))
              + f" | {parts or '-'} |")
        w("")

    profiles = results.get("profiles") or {}
    if profiles:
        w("## Where kext's time goes (py-spy)\n")
        w("Samples of the kext process while the run went on (py-spy, "
          "non-blocking, 100 Hz; only samples where kext was running Python, not waiting). "
          "Self time is the innermost Python frame; C code (OpenSSL, orjson, gRPC core) "
          "counts for the Python function that called it.\n")
    for name, summary in profiles.items():
        w(f"### {name} ({summary.get('samples', 0)} samples, raw stacks in "
          f"`{summary.get('file', '')}`)\n")
        if summary.get("error"):
            w(f"{summary['error']}\n")
            continue
        w("| self time by area | % | self time by function | % | kext function, inclusive "
          "| % |")
        w("|---|--:|---|--:|---|--:|")
        areas = summary.get("area_self_percent", [])
        functions = summary.get("self_percent", [])
        inclusive = summary.get("kext_inclusive_percent", [])
        for i in range(max(len(areas), len(functions), len(inclusive))):
            cells = []
            for column in (areas, functions, inclusive):
                name_, pct = column[i] if i < len(column) else ("", "")
                cells += [f"`{name_}`" if name_ else "", str(pct)]
            w("| " + " | ".join(cells) + " |")
        w("")
    return "\n".join(out)


def _other_cpu(results: dict[str, Any]) -> tuple[float, float] | None:
    """Mean and max of the CPU other processes used during the measured runs."""
    values = [row[t]["cpu_cores"]["other"] for s in results["scenarios"] for row in s["levels"]
              for t in ("kext", "etcd") if "other" in (row[t].get("cpu_cores") or {})]
    if not values:
        return None
    return sum(values) / len(values), max(values)


def _best_kext_rate(results: dict[str, Any]) -> float | None:
    rates = [row["kext"]["ops_per_s"] for s in results["scenarios"] for row in s["levels"]]
    return max(rates) if rates else None


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    """Write the PNGs into directory; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    written: list[Path] = []
    scenarios = results["scenarios"]
    columns = 4
    rows = max(1, math.ceil(len(scenarios) / columns))

    def grid(title: str) -> tuple[Any, list[Any]]:
        fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows),
                                 squeeze=False)
        fig.suptitle(title)
        flat = [a for line in axes for a in line]
        for ax in flat[len(scenarios):]:
            ax.set_visible(False)
        return fig, flat

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = directory / PLOTS[name]
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        _shrink(path)
        written.append(path)

    def levels_axis(ax: Any, levels: list[int]) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(level) for level in levels])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("concurrency")
        ax.grid(True, alpha=0.3)

    fig, axes = grid("Throughput (ops/s) against concurrency - kext vs raw etcd")
    for ax, scenario in zip(axes, scenarios, strict=False):
        levels = [row["concurrency"] for row in scenario["levels"]]
        for target in ("kext", "etcd"):
            ax.plot(levels, [row[target]["ops_per_s"] for row in scenario["levels"]],
                    STYLE[target], color=COLOR[target], label=target)
        ax.set_title(scenario["name"], fontsize=10)
        ax.set_yscale("log")
        levels_axis(ax, levels)
        ax.set_ylabel("ops/s")
        ax.legend(fontsize=8)
    save(fig, "throughput")

    fig, axes = grid("Latency p50 / p99 (ms) against concurrency - kext vs raw etcd")
    for ax, scenario in zip(axes, scenarios, strict=False):
        levels = [row["concurrency"] for row in scenario["levels"]]
        for target in ("kext", "etcd"):
            for q, marker, alpha in (("p50_ms", "o", 1.0), ("p99_ms", "^", 0.6)):
                ax.plot(levels, [row[target][q] for row in scenario["levels"]],
                        marker + STYLE[target][1:], color=COLOR[target], alpha=alpha,
                        label=f"{target} {q[:3]}")
        ax.set_title(scenario["name"], fontsize=10)
        ax.set_yscale("log")
        levels_axis(ax, levels)
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
    save(fig, "latency")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for scenario in scenarios:
        levels = [row["concurrency"] for row in scenario["levels"]]
        values = [row["ratio"]["ops_per_s"] or math.nan for row in scenario["levels"]]
        ax.plot(levels, values, "o-", label=scenario["name"])
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.set_yscale("log")
    if scenarios:
        levels_axis(ax, [row["concurrency"] for row in scenarios[0]["levels"]])
    ax.set_ylabel("kext ops/s / etcd ops/s")
    ax.set_title("Throughput ratio kext / raw etcd")
    ax.legend(fontsize=8, ncol=2)
    save(fig, "ratio")

    watch = results.get("watch") or {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    quantiles = list(range(1, 101))
    shades = {0: 1.0, 1: 0.7, 2: 0.45, 3: 0.3}
    for i, row in enumerate(watch.get("levels", [])):
        for target in ("kext", "etcd"):
            data = row.get(target)
            if data and data.get("percentiles_ms"):
                left.plot(data["percentiles_ms"], quantiles, STYLE[target][1:],
                          color=COLOR[target], alpha=shades.get(i, 0.3),
                          linewidth=1 + i * 0.6, label=f"{target}, {row['watchers']} watchers")
    left.set_xscale("log")
    left.set_xlabel("delivery latency (ms)")
    left.set_ylabel("percentile")
    left.set_title("Watch delivery latency distribution (CDF)"
                   + ("" if watch.get("available") else " - kext: not available"))
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    ns = [row["watchers"] for row in watch.get("levels", [])]
    for target in ("kext", "etcd"):
        values = [(row.get(target) or {}).get("events_per_s", math.nan)
                  for row in watch.get("levels", [])]
        right.plot(ns, values, STYLE[target], color=COLOR[target], label=f"{target} delivered")
    if ns:
        right.plot(ns, [n * watch["write_rate"] for n in ns], ":", color="grey",
                   label="written x watchers")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xticks(ns, [str(n) for n in ns])
    right.xaxis.set_minor_locator(NullLocator())
    right.set_xlabel("watchers")
    right.set_ylabel("events/s")
    right.set_title("Watch events delivered per second")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    save(fig, "watch")

    client = results.get("client") or {}
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("trivial", "client alone (trivial TLS endpoint)"),
                       ("kext_healthz", "kext /healthz")):
        rows_ = client.get(key, [])
        ax.plot([r["concurrency"] for r in rows_], [r["ops_per_s"] for r in rows_], "o-",
                label=label)
    best = _best_kext_rate(results)
    if best:
        ax.axhline(best, color="grey", linestyle=":", label="best kext scenario rate")
    ax.set_yscale("log")
    levels_axis(ax, [r["concurrency"] for r in client.get("trivial", [])])
    ax.set_ylabel("requests/s")
    ax.set_title("Load generator ceiling")
    ax.legend(fontsize=8)
    save(fig, "client")
    return written


def _shrink(path: Path) -> None:
    """Re-save a plot with a 64-colour palette: a third of the size, no visible change."""
    try:
        from PIL import Image
    except ImportError:  # matplotlib brings Pillow; keep the full-colour file otherwise
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def write(results: dict[str, Any], directory: Path) -> None:
    """report.md and the plots into directory (results.json is written by the caller). A
    partial run (--only) may lack what some plot needs: then the plots are left out."""
    try:
        plots(results, directory)
    except (ValueError, KeyError, IndexError) as exc:
        if not results["meta"].get("only"):
            raise
        print(f"plots left out of a partial run: {exc}")
    (directory / "report.md").write_text(markdown(results))
