"""The markdown tables printed after a run, and the machine description stored with it."""

import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import stats
from bench.procs import FLOORS

PACKAGES = (
    "django",
    "daphne",
    "twisted",
    "channels",
    "httpx",
    "openai",
    "aiohttp",
    "uvloop",
    "orjson",
    "h11",
)


def machine() -> dict[str, Any]:
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.partition(":")[2].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total": meminfo[0].partition(":")[2].strip() if meminfo else "",
        "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cpu(summary: dict[str, Any], name: str, key: str, digits: int = 2) -> str:
    return _fmt(summary["processes"].get(name, {}).get(key), digits)


SCENARIO_COLUMNS = (
    ("scenario", lambda n, s: n),
    ("req", lambda n, s: f"{s['ok']}/{s['requests']}"),
    ("err", lambda n, s: _fmt(s["errors"])),
    ("req/s", lambda n, s: _fmt(s["requests_per_s"])),
    ("chunks/s", lambda n, s: _fmt(s["chunks_per_s"], 0)),
    ("TTFT p50/p95/p99 ms", lambda n, s: "/".join(_fmt(s[f"ttft_p{q}_ms"]) for q in (50, 95, 99))),
    ("total p50/p95 ms", lambda n, s: "/".join(_fmt(s[f"total_p{q}_ms"]) for q in (50, 95))),
    ("mamba CPU s", lambda n, s: _cpu(s, "mamba", "cpu_s")),
    ("mamba ms CPU/1k chunks", lambda n, s: _cpu(s, "mamba", "cpu_ms_per_1k_chunks", 1)),
    ("upstream CPU s", lambda n, s: _cpu(s, "fake-upstream", "cpu_s")),
    ("upstream ms CPU/1k chunks", lambda n, s: _cpu(s, "fake-upstream", "cpu_ms_per_1k_chunks", 1)),
    ("client CPU s", lambda n, s: _cpu(s, "load-generator", "cpu_s")),
    ("other CPU s", lambda n, s: _fmt(s["system"]["other_cpu_s"], 2)),
    ("busiest process (cores)", lambda n, s: _busiest(s)),
    ("mamba RSS before/after/peak MiB", lambda n, s: _rss(s)),
)


def _busiest(summary: dict[str, Any]) -> str:
    """The process nearest to a full core: the bottleneck when its share is close to 1."""
    shares = {name: p.get("cpu_util") or 0.0 for name, p in summary["processes"].items()}
    name = max(shares, key=shares.__getitem__)
    return f"{name} {shares[name]:.2f}"


def _rss(summary: dict[str, Any]) -> str:
    figures = summary["processes"].get("mamba")
    if not figures:
        return "-"
    keys = ("rss_before_kib", "rss_after_kib", "peak_rss_kib")
    return "/".join(f"{figures[k] / 1024:.0f}" for k in keys)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def scenario_table(scenarios: dict[str, dict[str, Any]]) -> str:
    header = [title for title, _ in SCENARIO_COLUMNS]
    rows = [[cell(name, s) for _, cell in SCENARIO_COLUMNS] for name, s in scenarios.items()]
    return _table(header, rows)


RATIO_ROWS = (
    ("throughput (req/s) mamba / direct", "throughput_ratio", 3),
    ("chunks/s mamba / direct", "chunks_per_s_ratio", 3),
    ("TTFT p50 mamba / direct", "ttft_p50_ratio", 2),
    ("TTFT p50 added by mamba (ms)", "ttft_p50_added_ms", 2),
    ("TTFT p95 added by mamba (ms)", "ttft_p95_added_ms", 2),
    ("total p50 mamba / direct", "total_p50_ratio", 2),
    ("total p50 added by mamba (ms)", "total_p50_added_ms", 1),
    ("mamba CPU ms / 1k chunks", "mamba_cpu_ms_per_1k_chunks", 1),
    ("upstream CPU ms / 1k chunks (direct run)", "upstream_cpu_ms_per_1k_chunks", 1),
    ("CPU per chunk: mamba / upstream", "cpu_per_chunk_mamba_vs_upstream", 2),
)


def ratio_table(ratios: dict[str, dict[str, Any]]) -> str:
    header = ["ratio", *ratios]
    rows = [
        [label, *(_fmt(r.get(key), digits) for r in ratios.values())]
        for label, key, digits in RATIO_ROWS
    ]
    return _table(header, rows)


def cost_table(models: dict[str, dict[str, Any]]) -> str:
    header = ["process (fit of CPU/request on chunks)", "fixed CPU ms/request", "CPU us/chunk"]
    rows = [
        [
            name,
            _fmt(fit.get("fixed_cpu_ms_per_request"), 2),
            _fmt(fit.get("marginal_cpu_us_per_chunk"), 1),
        ]
        for name, fit in models.items()
    ]
    return _table(header, rows)


def markdown(result: dict[str, Any]) -> str:
    info, args = result["machine"], result["args"]
    head = (
        f"nproc={info['nproc']} ({info['cpu_model']}), Python {info['python']}; "
        f"concurrency={args['concurrency']} requests={args['requests']} chunks={args['chunks']}; "
        "load generator, fake upstream and Mamba share the same cores."
    )
    parts = [head, scenario_table(result["scenarios"]), ratio_table(result["ratios"])]
    if result.get("cpu_cost_model"):
        parts.append(cost_table(result["cpu_cost_model"]))
    return "\n\n".join(parts)


# -- The suite (`python -m bench.suite`) -------------------------------------------------------


# Other programs' CPU over the load, in cores, above which a run is flagged as noisy.
NOISY_CORES = 0.1


def _vs(row: dict[str, Any]) -> str:
    value = row["vs"]
    if value is None:
        return "-"
    if row["vs_kind"] == "added_ms":
        return f"{value:+,.1f} ms"
    return f"{value:,.2f}x"


def _met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "**no**")


def goal_table(rows: list[dict[str, Any]]) -> str:
    """The goals; with the floors' columns (the floor proxies, `bench.floor`) where they were
    measured."""
    floors = [
        key for key in map(stats.floor_key, FLOORS) if any(row.get(key) is not None for row in rows)
    ]
    header = ["", "direct", *(key.replace("_", " ") for key in floors), "Mamba"]
    header += ["Mamba vs direct", *(["Mamba vs floor"] if floors else []), "goal", "met?"]
    body = [
        [
            row["figure"],
            _fmt(row["direct"], 2) if row["direct"] is not None else "-",
            *(_fmt(row.get(key), 2) for key in floors),
            _fmt(row["mamba"], 2),
            _vs(row),
            *([_vs({"vs": row.get("vs_floor"), "vs_kind": "ratio"})] if floors else []),
            row["goal"],
            _met(row["met"]),
        ]
        for row in rows
    ]
    return _table(header, body)


def _proc(level: dict[str, Any], name: str, key: str, digits: int = 2) -> str:
    return _fmt(level["processes"].get(name, {}).get(key), digits)


def _mib(level: dict[str, Any], name: str) -> str:
    value = level["processes"].get(name, {}).get("peak_rss_kib")
    return "-" if value is None else f"{value / 1024:.0f}"


def _cpu_ms_per_stream_of(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda level: _proc(level, name, "cpu_ms_per_stream")


LEVEL_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("streams/s (rounds)", lambda lv: f"{_fmt(lv['streams_per_s'])} ({_rounds(lv)})"),
    ("err", lambda lv: _fmt(lv["errors"])),
    (
        "TTFT p50/p95/p99 ms",
        lambda lv: "/".join(_fmt(lv["latency"][f"ttft_p{q}_ms"]) for q in (50, 95, 99)),
    ),
    ("total p50 ms", lambda lv: _fmt(lv["latency"]["total_p50_ms"])),
    ("reads/stream", lambda lv: _fmt(lv["reads_per_request"])),
    ("mamba CPU ms/stream", lambda lv: _proc(lv, "mamba", "cpu_ms_per_stream")),
    ("mamba cores", lambda lv: _proc(lv, "mamba", "cpu_util")),
    ("upstream CPU ms/stream", lambda lv: _proc(lv, "fake-upstream", "cpu_ms_per_stream")),
    ("upstream cores", lambda lv: _proc(lv, "fake-upstream", "cpu_util")),
    *((f"{name.replace('-', ' ')} CPU ms/stream", _cpu_ms_per_stream_of(name)) for name in FLOORS),
    ("client cores", lambda lv: _proc(lv, "load-generator", "cpu_util")),
    ("other CPU s", lambda lv: _fmt(lv["system"]["other_cpu_s"], 2)),
    ("busiest (cores)", lambda lv: _busiest(lv)),
    ("mamba peak RSS MiB", lambda lv: _mib(lv, "mamba")),
)


def _rounds(level: dict[str, Any]) -> str:
    return ", ".join(_fmt(v) for v in level["streams_per_s_rounds"])


def level_table(levels: dict[str, dict[str, Any]]) -> str:
    header = ["level", "target", *(title for title, _ in LEVEL_COLUMNS)]
    rows = [
        [name, kind, *(cell(level[kind]) for _, cell in LEVEL_COLUMNS)]
        for name, level in levels.items()
        for kind in ("direct", "mamba", *FLOORS)
        if kind in level
    ]
    return _table(header, rows)


def model_table(models: dict[str, dict[str, Any]]) -> str:
    header = ["process", "CPU ms/stream (short, long)", "fixed CPU ms", "CPU µs/chunk"]
    header += ["net of idle: fixed ms", "µs/chunk", "idle cores"]
    rows = []
    for name, m in models.items():
        points = ", ".join(_fmt(v, 2) for v in m.get("cpu_ms_per_stream", []))
        rows.append(
            [
                name,
                points,
                _fmt(m.get("fixed_cpu_ms"), 2),
                _fmt(m.get("cpu_us_per_chunk"), 1),
                _fmt(m.get("net_fixed_cpu_ms"), 2),
                _fmt(m.get("net_cpu_us_per_chunk"), 1),
                _fmt(m.get("idle_cpu_util"), 4),
            ]
        )
    return _table(header, rows)


def _memory_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    held = result.get("open_streams")
    if held:
        rss = held["rss_kib"]["mamba"]
        closed = held["upstream_closed_after_s"]
        lines.append(
            f"- open streams: {held['open']:,} of {held['requested']:,} open at once "
            f"(opened in {held['open_s']:.1f} s, {_fmt(held['mamba_cpu_ms_per_open'], 2)} ms "
            f"Mamba CPU each; failed {sum(held['failed'].values())}, ended early "
            f"{held['ended_early']}); Mamba RSS {rss['before'] / 1024:.1f} -> "
            f"{rss['open'] / 1024:.1f} MiB = {_fmt(held['mamba_kib_per_stream'], 1)} KiB per "
            f"stream, {rss['after_close'] / 1024:.1f} MiB after they closed; the upstream saw "
            f"them all closed {_fmt(closed, 2)} s after the client left."
        )
    grown = result.get("growth")
    if grown and grown.get("samples"):
        series = ", ".join(f"{s['rss_kib'] / 1024:.1f}" for s in grown["samples"])
        lines.append(
            f"- growth: {grown['concurrency']} concurrent `bench:{grown['chunks']}` streams; "
            f"Mamba RSS (MiB, idle) at start and after each block: {series}; "
            f"{_fmt(grown.get('growth_pct'), 2)} % over the "
            f"{_fmt(grown.get('streams_after_warmup'))} streams after the first "
            f"{grown['warmup']:,}; {grown['errors']} errors; {grown['seconds']} s."
        )
    return lines


def suite_markdown(result: dict[str, Any]) -> str:
    info, args = result["machine"], result["args"]
    low, high = args["concurrency"]
    head = (
        f"nproc={info['nproc']} ({info['cpu_model']}), Python {info['python']}, load average "
        f"at start {', '.join(f'{v:.2f}' for v in info['loadavg_at_start'])}; "
        f"{'quick' if args['quick'] else 'full'} run in {result.get('bench_seconds')} s: "
        f"{args['chunks']}-chunk replies paced {args['chunk_delay'] * 1000:g} ms apart, "
        f"{args['rounds']} round(s) of direct/mamba per level, Mamba on `{args['server']}`"
        f"{f' --workers {args["workers"]}' if args['workers'] != 1 else ''}, auth "
        f"`{args['auth']}`{''.join(f', {k}={v}' for k, v in args['overrides'].items())}; "
        f"load generator: a `{args.get('client', 'httpx')}` client per worker. "
        "Load generator, fake upstream and Mamba share the cores."
    )
    parts = [head, goal_table(result["goals"])]
    levels = result.get("levels")
    if levels:
        other = sum(
            lv[k]["system"]["other_cpu_s"] for lv in levels.values() for k in lv if k != "level"
        )
        wall = sum(lv[k]["wall_s"] for lv in levels.values() for k in lv if k != "level")
        share = other / wall if wall else 0.0
        warning = (
            f"**Noisy run** (other programs over {NOISY_CORES:g} core): its figures may be "
            "off by much more than their digits; compare several runs. "
            if share > NOISY_CORES
            else ""
        )
        parts.append(
            f"{warning}Noise: {other:.1f} CPU s of other programs over {wall:.1f} s of load "
            f"({share:.2f} cores). TTFT percentiles leave out each round's opening burst; "
            f"streams/s is the steady rate, with {low} or {high} streams in flight."
        )
        parts.append(level_table(levels))
    if result.get("cpu_model"):
        parts.append(model_table(result["cpu_model"]))
    if lines := _memory_lines(result):
        parts.append("\n".join(lines))
    if result.get("errors"):
        parts.append(f"**Errors**: {result['errors']}")
    return "\n\n".join(parts)
