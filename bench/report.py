"""The markdown tables printed after a run, and the machine description stored with it."""

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("django", "daphne", "twisted", "channels", "httpx", "openai", "orjson", "h11")


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
