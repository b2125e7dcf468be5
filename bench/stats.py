"""Figures of a scenario (latency percentiles, throughput, CPU, memory) and mamba/direct ratios."""

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench.load import Outcome, RunResult
from bench.procs import FLOORS, ProcSample


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


# -- The suite (`python -m bench.suite`): rounds pooled per level, memory, goals ----------------


def steady(outcomes: list[Outcome], concurrency: int) -> tuple[list[Outcome], float | None]:
    """The requests after the opening burst (each worker's first request started at once,
    which no server sees in steady use) and the streams/s in steady state: completions from
    the end of the first wave (the `concurrency`-th completion) to the last request's start,
    all that time with `concurrency` in flight. None when the run is too short for it (it
    needs more than 2 x `concurrency` requests)."""
    ok = [o for o in outcomes if o.ok]
    later = [o for o in ok if o.index >= concurrency] or ok
    ends = sorted(o.started_s + o.total_s for o in outcomes)
    if len(ends) < concurrency or not ok:
        return later, None
    first_wave_end = ends[concurrency - 1]
    last_start = max(o.started_s for o in outcomes)
    if last_start - first_wave_end <= 0:
        return later, None
    done = sum(1 for o in ok if first_wave_end < o.started_s + o.total_s <= last_start)
    return later, done / (last_start - first_wave_end)


def pooled_latency(outcomes: list[Outcome]) -> dict[str, float | None]:
    ttft = [o.ttft_s for o in outcomes if o.ok and o.ttft_s is not None]
    total = [o.total_s for o in outcomes if o.ok]
    figures = {f"ttft_p{q}_ms": _ms(percentile(ttft, q)) for q in (50, 95, 99)}
    figures |= {f"total_p{q}_ms": _ms(percentile(total, q)) for q in (50, 95, 99)}
    p50, p99 = figures["ttft_p50_ms"], figures["ttft_p99_ms"]
    figures["ttft_p99_over_p50"] = _ratio(p99, p50)
    return figures


def pool_rounds(rounds: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """One target at one level over its rounds. Each round: `result` (RunResult),
    `processes` (`process_figures` per server), `system_used` (machine CPU seconds)."""
    outcomes = [o for r in rounds for o in r["result"].outcomes]
    ok = [o for o in outcomes if o.ok]
    wall = sum(r["result"].wall_s for r in rounds)
    per_round, windows = [], []
    steady_set: list[Outcome] = []
    for r in rounds:
        later, rate = steady(r["result"].outcomes, concurrency)
        steady_set += later
        wall_rate = _per_s(sum(o.ok for o in r["result"].outcomes), r["result"].wall_s)
        per_round.append(rate if rate is not None else wall_rate)
        windows.append(rate)
    errors = Counter(o.error for o in outcomes if not o.ok)
    summary: dict[str, Any] = {
        "rounds": len(rounds),
        "requests": len(outcomes),
        "ok": len(ok),
        "errors": len(outcomes) - len(ok),
        "error_kinds": dict(errors.most_common(5)),
        "wall_s": round(wall, 3),
        # Steady streams/s: the mean of the rounds' (each round's own wall-clock figure when
        # it was too short to have a steady window).
        "streams_per_s": round(sum(per_round) / len(per_round), 2) if per_round else 0.0,
        "streams_per_s_rounds": [round(v, 2) for v in per_round],
        "streams_per_s_wall": _per_s(len(ok), wall),
        "steady_window": all(w is not None for w in windows),
        "chunks_per_request": round(sum(o.tokens for o in ok) / len(ok), 1) if ok else None,
        "events_per_request": round(sum(o.events for o in ok) / len(ok), 1) if ok else None,
        "reads_per_request": round(sum(o.reads for o in ok) / len(ok), 1) if ok else None,
        "latency": pooled_latency(steady_set),
        "latency_all": pooled_latency(outcomes),
    }
    names = {name for r in rounds for name in r["processes"]}
    summary["processes"] = {name: _pool_process(rounds, name, len(ok)) for name in sorted(names)}
    client_cpu = sum(r["result"].client_cpu_s for r in rounds)
    summary["processes"]["load-generator"] = {
        "cpu_s": round(client_cpu, 3),
        "cpu_util": round(client_cpu / wall, 3) if wall else None,
    }
    used = {k: sum(r["system_used"][k] for r in rounds) for k in rounds[0]["system_used"]}
    summary["system"] = system_figures(used, summary["processes"], wall)
    return summary


def _pool_process(rounds: list[dict[str, Any]], name: str, ok: int) -> dict[str, Any]:
    mine = [r["processes"][name] for r in rounds if name in r["processes"]]
    cpu = sum(p["cpu_s"] for p in mine)
    wall = sum(r["result"].wall_s for r in rounds if name in r["processes"])
    return {
        "cpu_s": round(cpu, 3),
        "cpu_util": round(cpu / wall, 3) if wall else None,
        "cpu_ms_per_stream": round(cpu * 1000 / ok, 3) if ok else None,
        "peak_rss_kib": max(p["peak_rss_kib"] for p in mine),
        "rss_before_kib": mine[0]["rss_before_kib"],
        "rss_after_kib": mine[-1]["rss_after_kib"],
    }


def fit(short: tuple[float, float | None], long: tuple[float, float | None]) -> dict[str, Any]:
    """`fixed + per_chunk x chunks` through two (chunks, CPU ms per stream) points."""
    (c1, r1), (c2, r2) = short, long
    if r1 is None or r2 is None or c1 == c2:
        return {}
    per_chunk_ms = (r2 - r1) / (c2 - c1)
    return {
        "fixed_cpu_ms": round(r1 - per_chunk_ms * c1, 3),
        "cpu_us_per_chunk": round(per_chunk_ms * 1000, 2),
    }


def cpu_model(
    short: dict[str, Any], long: dict[str, Any], name: str, idle_util: float | None
) -> dict[str, Any]:
    """Fixed CPU per stream and CPU per chunk of process `name`, from two levels of one
    concurrency that differ in reply length (chunks from the replies themselves). With
    `idle_util` (the share of a core the process uses while it serves nothing), also the fit
    of the CPU net of it: background work (timers, health checks) a slow stream would
    otherwise be charged for."""
    points = []
    for level in (short, long):
        figures = level["processes"].get(name, {})
        ok = level["ok"]
        gross = figures.get("cpu_ms_per_stream")
        net = None
        if gross is not None and idle_util is not None and ok:
            net = gross - idle_util * level["wall_s"] * 1000 / ok
        points.append((level["chunks_per_request"] or 0.0, gross, net))
    (c1, g1, n1), (c2, g2, n2) = points
    model = fit((c1, g1), (c2, g2)) | {"chunks": [c1, c2], "cpu_ms_per_stream": [g1, g2]}
    if idle_util is not None:
        net = fit((c1, n1), (c2, n2))
        model |= {f"net_{key}": value for key, value in net.items()}
        model["idle_cpu_util"] = round(idle_util, 5)
        model["net_cpu_ms_per_stream"] = [_round(n1, 3), _round(n2, 3)]
    return model


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def growth(samples: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """RSS after the warm-up's streams against RSS after all of them (idle, both times)."""
    base = next((s for s in samples if s["streams"] >= warmup), None)
    last = samples[-1] if samples else None
    if base is None or last is None or last is base:
        return {"samples": samples}
    grown = last["rss_kib"] - base["rss_kib"]
    return {
        "streams_after_warmup": last["streams"] - base["streams"],
        "rss_after_warmup_kib": base["rss_kib"],
        "rss_end_kib": last["rss_kib"],
        "growth_kib": grown,
        "growth_pct": round(grown * 100 / base["rss_kib"], 2) if base["rss_kib"] else None,
        "samples": samples,
    }


# The goals of the performance issue, each against the figures of one suite run.
GOAL_ADDED_TTFT_MS = 2.0
GOAL_THROUGHPUT_RATIO = 0.9
GOAL_TTFT_TAIL = 3.0
GOAL_CPU_MS_PER_STREAM = 5.0  # = CPU s per 1000 streams
GOAL_FIXED_CPU_MS = 1.5
GOAL_CPU_US_PER_CHUNK = 70.0
GOAL_PEAK_RSS_MIB = 120.0
GOAL_KIB_PER_OPEN_STREAM = 30.0
GOAL_GROWTH_PCT = 5.0


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _kib_to_mib(value: float | None) -> float | None:
    return None if value is None else round(value / 1024, 1)


def floor_key(name: str) -> str:
    """The key of a floor proxy's figure in a goal row ("push-floor": "push_floor")."""
    return name.replace("-", "_")


def goal_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's table: one row per goal, with direct, Mamba, how they compare, the goal,
    and whether it is met (None: not measured in this run)."""
    levels, names = result.get("levels", {}), result.get("level_names", {})
    rows: list[dict[str, Any]] = []

    def level(key: str, target: str) -> dict[str, Any] | None:
        name = names.get(key)
        return levels.get(name, {}).get(target) if name else None

    def proc(figures: dict[str, Any] | None, name: str, key: str) -> Any:
        return None if figures is None else figures["processes"].get(name, {}).get(key)

    def row(
        figure: str,
        direct: Any,
        mamba: Any,
        vs: Any,
        vs_kind: str,
        goal: str,
        met: Any,
        floors: Callable[[str], Any] = lambda name: None,
    ) -> None:
        # Against the floor (aiohttp's read path, what passing the stream through costs
        # here at all): a ratio that says more of the code than of the machine.
        vs_floor = _ratio(mamba, floors("floor"))
        rows.append(
            {"figure": figure, "direct": direct, "mamba": mamba, "vs": vs, "vs_kind": vs_kind}
            | {"goal": goal, "met": met, "vs_floor": vs_floor}
            | {floor_key(name): floors(name) for name in FLOORS}
        )

    d1, m1 = level("ttft", "direct"), level("ttft", "mamba")
    if d1 and m1:
        dp, mp = d1["latency"]["ttft_p50_ms"], m1["latency"]["ttft_p50_ms"]
        added = _diff(mp, dp)
        row(
            "time to first token p50, 1 stream (ms)",
            dp,
            mp,
            added,
            "added_ms",
            f"≤ +{GOAL_ADDED_TTFT_MS:g} ms",
            _at_most(added, GOAL_ADDED_TTFT_MS),
        )
    dl, ml = level("low", "direct"), level("low", "mamba")
    dh, mh = level("high", "direct"), level("high", "mamba")
    low_c, high_c = result.get("concurrency", [None, None])
    if dl and ml:
        ratio = _ratio(ml["streams_per_s"], dl["streams_per_s"])
        met = None if ratio is None else ratio >= GOAL_THROUGHPUT_RATIO
        row(
            f"streams/s at {low_c} concurrent",
            dl["streams_per_s"],
            ml["streams_per_s"],
            ratio,
            "ratio",
            f"≥ {GOAL_THROUGHPUT_RATIO:g} x direct",
            met,
        )
    if dh and mh:
        ratio = _ratio(mh["streams_per_s"], dh["streams_per_s"])
        own = ml["streams_per_s"] if ml else None
        met = None if own is None else mh["streams_per_s"] >= own
        goal = f"≥ Mamba at {low_c} ({own:,.1f})" if own is not None else f"≥ Mamba at {low_c}"
        row(
            f"streams/s at {high_c} concurrent",
            dh["streams_per_s"],
            mh["streams_per_s"],
            ratio,
            "ratio",
            goal,
            met,
        )
        tail = mh["latency"]["ttft_p99_over_p50"]
        row(
            f"TTFT p99 / p50 at {high_c} concurrent",
            dh["latency"]["ttft_p99_over_p50"],
            tail,
            None,
            "",
            f"≤ {GOAL_TTFT_TAIL:g}",
            _at_most(tail, GOAL_TTFT_TAIL),
        )
    if dl and ml:
        upstream = proc(dl, "fake-upstream", "cpu_ms_per_stream")
        mamba = proc(ml, "mamba", "cpu_ms_per_stream")
        row(
            f"CPU s per 1,000 streams at {low_c} concurrent",
            upstream,
            mamba,
            _ratio(mamba, upstream),
            "ratio",
            f"≤ {GOAL_CPU_MS_PER_STREAM:g}",
            _at_most(mamba, GOAL_CPU_MS_PER_STREAM),
        )
    if d1 and m1:
        upstream = proc(d1, "fake-upstream", "cpu_ms_per_stream")
        mamba = proc(m1, "mamba", "cpu_ms_per_stream")
        chunks = m1["chunks_per_request"]
        row(
            f"CPU ms per {chunks:g}-chunk paced stream, 1 stream",
            upstream,
            mamba,
            _ratio(mamba, upstream),
            "ratio",
            f"≤ {GOAL_CPU_MS_PER_STREAM:g}",
            _at_most(mamba, GOAL_CPU_MS_PER_STREAM),
            lambda name: proc(level("ttft", name), name, "cpu_ms_per_stream"),
        )
    models = result.get("cpu_model", {})
    up_model, mamba_model = models.get("fake-upstream", {}), models.get("mamba", {})
    prefix = "net_" if "net_fixed_cpu_ms" in mamba_model else ""
    if mamba_model:
        fixed, up_fixed = mamba_model.get(f"{prefix}fixed_cpu_ms"), up_model.get("fixed_cpu_ms")
        row(
            "fixed CPU ms per request (fit, 1 stream)",
            up_fixed,
            fixed,
            _ratio(fixed, up_fixed),
            "ratio",
            f"≤ {GOAL_FIXED_CPU_MS:g}",
            _at_most(fixed, GOAL_FIXED_CPU_MS),
            lambda name: models.get(name, {}).get("fixed_cpu_ms"),
        )
        chunk = mamba_model.get(f"{prefix}cpu_us_per_chunk")
        up_chunk = up_model.get("cpu_us_per_chunk")
        row(
            "CPU µs per chunk arriving alone (fit, 1 stream)",
            up_chunk,
            chunk,
            _ratio(chunk, up_chunk),
            "ratio",
            f"≤ {GOAL_CPU_US_PER_CHUNK:g}",
            _at_most(chunk, GOAL_CPU_US_PER_CHUNK),
            lambda name: models.get(name, {}).get("cpu_us_per_chunk"),
        )
    if mh:
        peak = _kib_to_mib(proc(mh, "mamba", "peak_rss_kib"))
        row(
            f"peak RSS at {high_c} concurrent (MiB)",
            _kib_to_mib(proc(dh, "fake-upstream", "peak_rss_kib")),
            peak,
            None,
            "",
            f"≤ {GOAL_PEAK_RSS_MIB:g}",
            _at_most(peak, GOAL_PEAK_RSS_MIB),
        )
    held = result.get("open_streams") or {}
    if held.get("mamba_kib_per_stream") is not None:
        per_stream = held["mamba_kib_per_stream"]
        row(
            f"memory per open stream, {held['open']:,} open (KiB)",
            None,
            per_stream,
            None,
            "",
            f"≤ {GOAL_KIB_PER_OPEN_STREAM:g}",
            _at_most(per_stream, GOAL_KIB_PER_OPEN_STREAM),
        )
    grown = result.get("growth") or {}
    if grown.get("growth_pct") is not None:
        row(
            f"RSS growth over {grown['streams_after_warmup']:,} streams (%)",
            None,
            grown["growth_pct"],
            None,
            "",
            f"≤ {GOAL_GROWTH_PCT:g} %",
            _at_most(grown["growth_pct"], GOAL_GROWTH_PCT),
        )
    return rows
