"""Figures of a scenario (latency percentiles, throughput, CPU, memory) and mamba/direct ratios."""

from collections import Counter
from dataclasses import asdict
from typing import Any

from bench.load import Outcome, RunResult
from bench.procs import ProcSample


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _per_s(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def latency(outcomes: list[Outcome]) -> dict[str, float | None]:
    ok = [o for o in outcomes if o.ok]
    ttft = [o.ttft_s for o in ok if o.ttft_s is not None]
    total = [o.total_s for o in ok]
    figures = {f"ttft_p{q}_ms": _ms(percentile(ttft, q)) for q in (50, 95, 99)}
    figures |= {f"total_p{q}_ms": _ms(percentile(total, q)) for q in (50, 95, 99)}
    figures["total_max_ms"] = _ms(max(total, default=None))
    return figures


def process_figures(
    before: ProcSample, after: ProcSample, result: RunResult, peak_reset: bool
) -> dict[str, Any]:
    """CPU seconds over the scenario: as a share of one core, per request, per 1000 chunks."""
    cpu, wall = after.cpu_s - before.cpu_s, result.wall_s
    ok = [o for o in result.outcomes if o.ok]
    tokens = sum(o.tokens for o in ok)
    return {
        "cpu_s": round(cpu, 3),
        "cpu_util": round(cpu / wall, 3) if wall > 0 else None,
        "cpu_ms_per_request": round(cpu * 1000 / len(ok), 3) if ok else None,
        "cpu_ms_per_1k_chunks": round(cpu * 1000 / tokens * 1000, 3) if tokens else None,
        "rss_before_kib": before.rss_kib,
        "rss_after_kib": after.rss_kib,
        "peak_rss_kib": after.hwm_kib,
        "peak_rss_since": "scenario start" if peak_reset else "process start",
    }


def summarize(result: RunResult, processes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    outcomes, wall = result.outcomes, result.wall_s
    ok = [o for o in outcomes if o.ok]
    tokens = sum(o.tokens for o in ok)
    errors = Counter(o.error for o in outcomes if not o.ok)
    summary: dict[str, Any] = {
        "requests": len(outcomes),
        "ok": len(ok),
        "errors": len(outcomes) - len(ok),
        "error_kinds": dict(errors.most_common(5)),
        "wall_s": round(wall, 3),
        "requests_per_s": _per_s(len(ok), wall),
        "chunks_per_s": _per_s(tokens, wall),
        "events_per_s": _per_s(sum(o.events for o in ok), wall),
        "mib_per_s": round(sum(o.bytes for o in ok) / wall / 2**20, 3) if wall else 0.0,
        "chunks_total": tokens,
        "events_per_request": round(sum(o.events for o in ok) / len(ok), 1) if ok else None,
        "bytes_per_request": round(sum(o.bytes for o in ok) / len(ok)) if ok else None,
        "reads_per_request": round(sum(o.reads for o in ok) / len(ok), 1) if ok else None,
    }
    summary |= latency(outcomes)
    client_cpu = result.client_cpu_s
    summary["processes"] = processes | {
        "load-generator": {"cpu_s": round(client_cpu, 3), "cpu_util": round(client_cpu / wall, 3)}
    }
    return summary


def system_figures(
    used: dict[str, float], processes: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    """The whole machine over the scenario. `other_cpu_s` is task time the bench's three
    processes do not explain (other programs: noise when it is not near zero); `steal` is time
    the hypervisor gave to other guests."""
    ours = sum(p["cpu_s"] for p in processes.values())
    return {
        "tasks_cpu_s": round(used["tasks"], 3),
        "interrupts_cpu_s": round(used["interrupts"], 3),
        "steal_cpu_s": round(used["steal"], 3),
        "busy_cores": round((used["tasks"] + used["interrupts"]) / wall_s, 3) if wall_s else None,
        "other_cpu_s": round(max(used["tasks"] - ours, 0.0), 3),
    }


def cost_model(small: dict[str, Any], large: dict[str, Any], name: str) -> dict[str, Any]:
    """Fixed CPU ms per request and marginal CPU us per chunk of one process, from two scenarios
    that differ in reply length (a two-point linear fit of CPU per request on chunks)."""
    c1, c2 = small["scenario"]["chunks"], large["scenario"]["chunks"]
    r1 = small["processes"][name]["cpu_ms_per_request"]
    r2 = large["processes"][name]["cpu_ms_per_request"]
    if r1 is None or r2 is None or c1 == c2:
        return {}
    marginal_ms = (r2 - r1) / (c2 - c1)
    return {
        "fixed_cpu_ms_per_request": round(r1 - marginal_ms * c1, 3),
        "marginal_cpu_us_per_chunk": round(marginal_ms * 1000, 2),
    }


def raw(outcomes: list[Outcome]) -> dict[str, list[Any]]:
    """Every request's figures, one list per field (in completion order), times to the us."""
    rows = [asdict(o) for o in outcomes]
    columns: dict[str, list[Any]] = {key: [row[key] for row in rows] for key in Outcome.__slots__}
    for key in ("ttft_s", "total_s"):
        columns[key] = [None if v is None else round(v, 6) for v in columns[key]]
    return columns


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def compare(direct: dict[str, Any], mamba: dict[str, Any]) -> dict[str, Any]:
    """Mamba against the upstream alone, under the same load."""
    upstream_cpu = direct["processes"]["fake-upstream"]["cpu_ms_per_1k_chunks"]
    mamba_cpu = mamba["processes"]["mamba"]["cpu_ms_per_1k_chunks"]
    return {
        "throughput_ratio": _ratio(mamba["requests_per_s"], direct["requests_per_s"]),
        "chunks_per_s_ratio": _ratio(mamba["chunks_per_s"], direct["chunks_per_s"]),
        "ttft_p50_ratio": _ratio(mamba["ttft_p50_ms"], direct["ttft_p50_ms"]),
        "ttft_p50_added_ms": _diff(mamba["ttft_p50_ms"], direct["ttft_p50_ms"]),
        "ttft_p95_added_ms": _diff(mamba["ttft_p95_ms"], direct["ttft_p95_ms"]),
        "total_p50_ratio": _ratio(mamba["total_p50_ms"], direct["total_p50_ms"]),
        "total_p50_added_ms": _diff(mamba["total_p50_ms"], direct["total_p50_ms"]),
        "mamba_cpu_ms_per_1k_chunks": mamba_cpu,
        "upstream_cpu_ms_per_1k_chunks": upstream_cpu,
        "cpu_per_chunk_mamba_vs_upstream": _ratio(mamba_cpu, upstream_cpu),
    }
