"""The performance issue's figures, as ratios to the direct upstream, in one interleaved run:
`python -m bench.suite` (3-4 min; `--quick`: under a minute, for a smoke check)."""

# Three phases, each with its own Mamba process (the fake upstream runs throughout):
# - load: per level (1 stream with long and with short replies, then two concurrency levels),
#   a warm-up of both targets, then rounds of direct, mamba, direct, mamba..., so that the
#   machine's noise falls on both; every round samples CPU and memory of all processes; at
#   1 stream two more targets, the floors (`bench.floor`: the thinnest proxies, through
#   aiohttp's reader and pushed from the protocol's callback), take their turns too, so that
#   Mamba's CPU can be read against what passing the stream through costs at all on this
#   machine;
# - open: N streams held open at once (the fake's "hang" reply), RSS before and while open;
# - growth: RSS after a warm-up of W streams, then after each block of the N streams that
#   follow.
# Mamba authenticates every request (`api_key` mode, a key without limits created up front).

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import load, procs, report, run, stats

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "suite.json"
HOLD_TEXT = "hang"  # the fake answers 200 and sends nothing until the client leaves
SETTLE_SECONDS = 1.0  # idle time before an RSS reading (background writes finish)
OPEN_TIMEOUT_SECONDS = 55.0  # Mamba ends a silent stream after 60 s (CHAT_IDLE_TIMEOUT)
WARMUP_REQUESTS = 20  # at least, per target, before a level of higher concurrency

# Counts per profile; an option given on the command line wins.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 2,
        "ttft_requests": 30,
        "short_requests": 60,
        "requests": [400, 1000],
        "open_streams": 1000,
        "growth_warmup": 1000,
        "growth_streams": 10000,
        "growth_block": 1000,
    },
    "quick": {
        "rounds": 1,
        "ttft_requests": 8,
        "short_requests": 20,
        "requests": [150, 500],
        "open_streams": 200,
        "growth_warmup": 100,
        "growth_streams": 300,
        "growth_block": 100,
    },
}
PHASES = ("load", "open", "growth")


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    role: str  # "ttft", "short" (both at 1 stream), "low", "high" (the two concurrencies)
    concurrency: int
    chunks: int
    requests: int  # per round and target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="small counts: a smoke check in under a minute")
    add("--json", type=Path, default=DEFAULT_JSON, help="where to write results (and .md)")
    add("--phases", default=",".join(PHASES), help="which of load,open,growth to run")
    add("--server", choices=sorted(procs.SERVERS), default="daphne", help="how to serve Mamba")
    add("--workers", type=int, default=1, help="`mamba_site.serve --workers N` (--server serve)")
    add("--auth", choices=("api_key", "none"), default="api_key", help="Mamba's auth mode")
    add(
        "--checkout",
        type=Path,
        default=procs.REPO_ROOT,
        help="serve Mamba from the checkout at this path (this bench and fake upstream)",
    )
    add("--set", action="append", default=[], metavar="NAME=VALUE", help="a Mamba setting")
    add("--client", choices=("raw", "httpx"), default="raw", help="the load generator's client")
    add(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the floor proxies (bench.floor) at 1 stream too (default: yes)",
    )
    add("--chunks", type=int, default=50, help="content chunks of a reply")
    add("--short-chunks", type=int, default=5, help="chunks of the short reply (CPU model)")
    add("--chunk-delay", type=float, default=0.005, help="upstream pause between chunks (s)")
    add("--concurrency", type=int, nargs=2, default=[50, 200], metavar=("LOW", "HIGH"))
    add("--rounds", type=int, help="direct/mamba rounds per level (full 2, quick 1)")
    add("--ttft-requests", type=int, help="long replies at 1 stream, per round and target")
    add("--short-requests", type=int, help="short replies at 1 stream, per round and target")
    add("--requests", type=int, nargs=2, metavar=("LOW", "HIGH"), help="per round and target")
    add("--open-streams", type=int, help="streams held open at once (0: skip)")
    add("--opening", type=int, default=50, help="streams waiting for their answer at once")
    add("--growth-warmup", type=int, help="streams before the first RSS reading")
    add("--growth-streams", type=int, help="streams after it (0: skip)")
    add("--growth-block", type=int, help="streams between RSS readings")
    add("--growth-concurrency", type=int, default=50)
    add("--growth-chunks", type=int, default=5, help="chunks of each growth stream")
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    for key, value in profile.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(args.phases) - set(PHASES):
        parser.error(f"unknown phase(s) {sorted(unknown)}; choose from {','.join(PHASES)}")
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("MAMBA_"):
            parser.error(f"--set {item!r}: expected MAMBA_NAME=VALUE")
        overrides[name] = value
    args.overrides = overrides
    counts = [args.chunks, args.short_chunks, args.rounds, args.workers, args.opening]
    counts += [args.ttft_requests, args.short_requests, *args.requests, *args.concurrency]
    counts += [args.growth_block, args.growth_concurrency, args.growth_chunks]
    if min(counts) < 1 or min(args.open_streams, args.growth_streams, args.growth_warmup) < 0:
        parser.error("counts must be at least 1 (--open-streams, --growth-*: 0 skips)")
    if args.short_chunks == args.chunks:
        parser.error("--short-chunks must differ from --chunks (two points for the CPU model)")
    return args


def levels(args: argparse.Namespace) -> list[Level]:
    low, high = args.concurrency
    return [
        Level(f"c1-{args.chunks}", "ttft", 1, args.chunks, args.ttft_requests),
        Level(f"c1-{args.short_chunks}", "short", 1, args.short_chunks, args.short_requests),
        Level(f"c{low}", "low", low, args.chunks, args.requests[0]),
        Level(f"c{high}", "high", high, args.chunks, args.requests[1]),
    ]


def sample_all(servers: list[procs.Server]) -> dict[str, procs.ProcSample]:
    return {s.name: procs.sample_tree(s.pid) for s in servers}


async def run_round(
    clients: load.Clients, target: load.Target, level: Level, servers: list[procs.Server]
) -> dict[str, Any]:
    """One round of one target: its load, and every process's CPU and memory over it."""
    peak_reset = {s.name: procs.reset_peak_rss(s.pid) for s in servers}
    before, system_before = sample_all(servers), procs.system_cpu()
    text = f"bench:{level.chunks}"
    result = await load.run_load(clients, target, text, level.requests, level.concurrency)
    system_after, after = procs.system_cpu(), sample_all(servers)
    return {
        "result": result,
        "processes": {
            s.name: stats.process_figures(before[s.name], after[s.name], result, peak_reset[s.name])
            for s in servers
        },
        "system_used": {key: system_after[key] - system_before[key] for key in system_after},
    }


def round_record(kind: str, index: int, figures: dict[str, Any], conc: int) -> dict[str, Any]:
    result = figures["result"]
    later, rate = stats.steady(result.outcomes, conc)
    return {
        "target": kind,
        "round": index,
        "wall_s": round(result.wall_s, 3),
        "ok": sum(o.ok for o in result.outcomes),
        "errors": sum(not o.ok for o in result.outcomes),
        "streams_per_s": None if rate is None else round(rate, 2),
        "ttft_p50_ms": stats.pooled_latency(later)["ttft_p50_ms"],
        "processes": figures["processes"],
        "other_cpu_s": round(
            max(
                figures["system_used"]["tasks"]
                - sum(p["cpu_s"] for p in figures["processes"].values())
                - result.client_cpu_s,
                0.0,
            ),
            3,
        ),
    }


async def reset_upstream(client: httpx.AsyncClient, upstream: procs.Server) -> None:
    """Empty the fake's request log (it keeps every body otherwise)."""
    await client.post(f"{upstream.origin}/_fake/reset")


async def upstream_active(client: httpx.AsyncClient, upstream: procs.Server) -> int:
    """Chat requests the fake is answering now (it sees Mamba's upstream connections)."""
    response = await client.get(f"{upstream.origin}/_fake/state")
    return int(response.json()["active"])


# The levels at which the floor proxies are measured: those of the CPU model.
FLOOR_ROLES = ("ttft", "short")
# The floor proxies' targets and process names, as `procs.floor` names them.
FLOORS = tuple(procs.FLOORS)


async def load_phase(
    args: argparse.Namespace,
    upstream: procs.Server,
    mamba: procs.Server,
    targets: dict[str, load.Target],
    floors: tuple[procs.Server, ...] = (),
) -> dict[str, Any]:
    servers = [upstream, mamba, *floors]
    pooled: dict[str, Any] = {}
    rounds: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    async with load.make_client(1) as control:
        for level in levels(args):
            await reset_upstream(control, upstream)
            kinds: tuple[str, ...] = ("direct", "mamba")
            if level.role in FLOOR_ROLES:
                kinds += tuple(floor.name for floor in floors)
            # Per level and target, a client of one connection per worker, each opened by the
            # warm-up: a round opens none (connection set-up is not what is measured).
            async with contextlib.AsyncExitStack() as stack:
                clients = {
                    kind: await stack.enter_async_context(
                        load.worker_clients(level.concurrency, args.client)
                    )
                    for kind in kinds
                }
                for kind, client in clients.items():
                    count = max(level.concurrency, WARMUP_REQUESTS)
                    await run.warm_up(client, targets[kind], count, level.concurrency, 1)
                figures: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
                records = []
                for index in range(args.rounds):
                    for kind in kinds:
                        note(f"{level.name}: {kind}, round {index + 1}/{args.rounds}")
                        done = await run_round(clients[kind], targets[kind], level, servers)
                        figures[kind].append(done)
                        records.append(round_record(kind, index, done, level.concurrency))
            pooled[level.name] = {"level": asdict(level)} | {
                kind: stats.pool_rounds(done, level.concurrency) for kind, done in figures.items()
            }
            rounds[level.name] = records
            raw[level.name] = {
                kind: stats.raw([o for d in done for o in d["result"].outcomes])
                for kind, done in figures.items()
            }
    return {"levels": pooled, "rounds": rounds, "raw": raw}


async def open_phase(
    args: argparse.Namespace, upstream: procs.Server, mamba: procs.Server, target: load.Target
) -> dict[str, Any]:
    """RSS with `--open-streams` streams open at once, against RSS before them."""
    count, servers = args.open_streams, [upstream, mamba]
    async with (
        load.worker_clients(count, args.client) as clients,
        load.make_client(1) as control,
    ):
        await reset_upstream(control, upstream)
        await run.warm_up(clients, target, max(args.opening, WARMUP_REQUESTS), args.opening, 1)
        await asyncio.sleep(SETTLE_SECONDS)
        phase_started, client_cpu = time.perf_counter(), time.process_time()
        before, system_before = sample_all(servers), procs.system_cpu()
        for server in servers:
            procs.reset_peak_rss(server.pid)
        note(f"open: opening {count} streams")
        held = await load.hold_streams(clients, target, HOLD_TEXT, count, args.opening)
        timed_out = False
        try:
            await asyncio.wait_for(held.settled.wait(), OPEN_TIMEOUT_SECONDS)
        except TimeoutError:
            timed_out = True
        opened_cpu = sample_all(servers)
        await asyncio.sleep(SETTLE_SECONDS)
        during = sample_all(servers)
        active = await upstream_active(control, upstream)
        open_now = held.open_now
        note(f"open: {open_now} open; closing them")
        closing = time.perf_counter()
        await held.close()
        closed_after = None
        deadline = closing + 30
        while time.perf_counter() < deadline:
            if await upstream_active(control, upstream) == 0:
                closed_after = time.perf_counter() - closing
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(SETTLE_SECONDS)
        after, system_after = sample_all(servers), procs.system_cpu()
    per_stream = {
        name: round((during[name].rss_kib - before[name].rss_kib) / open_now, 2)
        if open_now
        else None
        for name in during
    }
    mamba_cpu = opened_cpu["mamba"].cpu_s - before["mamba"].cpu_s
    return {
        "requested": count,
        "open": open_now,
        "answered_200": held.opened,
        "failed": dict(held.failed.most_common(5)),
        "ended_early": held.ended_early,
        "timed_out": timed_out,
        "upstream_active_while_open": active,
        "open_s": round(held.open_s, 3),
        "mamba_cpu_ms_per_open": round(mamba_cpu * 1000 / held.opened, 3) if held.opened else None,
        "mamba_kib_per_stream": per_stream["mamba"],
        "upstream_kib_per_stream": per_stream["fake-upstream"],
        "upstream_closed_after_s": None if closed_after is None else round(closed_after, 3),
        "rss_kib": {
            name: {
                "before": before[name].rss_kib,
                "open": during[name].rss_kib,
                "peak": during[name].hwm_kib,
                "after_close": after[name].rss_kib,
            }
            for name in during
        },
        "system": stats.system_figures(
            {k: system_after[k] - system_before[k] for k in system_after},
            {name: {"cpu_s": after[name].cpu_s - before[name].cpu_s} for name in after}
            | {"load-generator": {"cpu_s": time.process_time() - client_cpu}},
            time.perf_counter() - phase_started,
        ),
    }


async def growth_phase(
    args: argparse.Namespace, upstream: procs.Server, mamba: procs.Server, target: load.Target
) -> dict[str, Any]:
    """Mamba's RSS (idle) after each block of streams: after the warm-up, then up to the end."""
    total = args.growth_warmup + args.growth_streams
    conc, text = args.growth_concurrency, f"bench:{args.growth_chunks}"
    start = procs.sample_tree(mamba.pid)
    samples: list[dict[str, Any]] = [
        {"streams": 0, "rss_kib": start.rss_kib, "cpu_s": round(start.cpu_s, 2), "errors": 0}
    ]
    done = errors = 0
    started = time.perf_counter()
    async with (
        load.worker_clients(conc, args.client) as clients,
        load.make_client(1) as control,
    ):
        while done < total:
            # Blocks end exactly at the warm-up's end, then every `growth_block` streams.
            edge = args.growth_warmup if done < args.growth_warmup else total
            count = min(args.growth_block, edge - done)
            await reset_upstream(control, upstream)
            result = await load.run_load(clients, target, text, count, conc)
            done += count
            errors += sum(not o.ok for o in result.outcomes)
            await asyncio.sleep(SETTLE_SECONDS)
            figures = procs.sample_tree(mamba.pid)
            samples.append(
                {
                    "streams": done,
                    "rss_kib": figures.rss_kib,
                    "cpu_s": round(figures.cpu_s, 2),
                    "errors": errors,
                    "streams_per_s": round(count / result.wall_s, 1),
                }
            )
            note(f"growth: {done}/{total} streams, Mamba RSS {figures.rss_kib / 1024:.1f} MiB")
    return stats.growth(samples, args.growth_warmup) | {
        "warmup": args.growth_warmup,
        "errors": errors,
        "concurrency": conc,
        "chunks": args.growth_chunks,
        "seconds": round(time.perf_counter() - started, 1),
    }


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mamba_targets(
    upstream: procs.Server,
    mamba: procs.Server,
    key: str | None,
    floors: tuple[procs.Server, ...] = (),
) -> dict[str, Any]:
    targets = {
        "direct": load.Target("direct", f"{upstream.origin}/v1/chat/completions"),
        "mamba": load.Target("mamba", f"{mamba.origin}/chat", api_key=key),
    }
    for floor in floors:  # asked as the fake is; their replies read as their kind says
        kind = procs.FLOORS[floor.name].kind
        targets[floor.name] = load.Target(kind, f"{floor.origin}/v1/chat/completions")
    return targets


def benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the fake and, per phase, a fresh Mamba; run the phases; stop everything."""
    largest = max(*args.concurrency, args.open_streams if "open" in args.phases else 0)
    procs.raise_fd_limit(2 * largest + 500)
    procs.check_server_options(args.server, args.workers)
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(procs.upstream(workdir, args.chunk_delay))
        floors = (
            tuple(
                stack.enter_context(procs.floor(workdir, upstream.origin, name)) for name in FLOORS
            )
            if args.floor and "load" in args.phases
            else ()
        )
        settings = procs.mamba_env(
            upstream, workdir, max(64, 2 * largest), args.auth, args.overrides
        )
        procs.migrate(settings, workdir, args.checkout)
        api_key = (
            procs.create_api_key(settings, workdir, args.checkout)
            if args.auth == "api_key"
            else None
        )
        started = time.perf_counter()
        servers: dict[str, Any] = {}
        for phase in args.phases:
            if phase == "open" and not args.open_streams:
                continue
            if phase == "growth" and not args.growth_streams:
                continue
            with procs.mamba(
                settings,
                workdir,
                args.server,
                workers=args.workers,
                migrated=True,
                log_name=f"mamba-{phase}.log",
                root=args.checkout,
            ) as mamba:
                targets = mamba_targets(upstream, mamba, api_key, floors)
                if phase == "load":
                    work = load_phase(args, upstream, mamba, targets, floors)
                elif phase == "open":
                    work = open_phase(args, upstream, mamba, targets["mamba"])
                else:
                    work = growth_phase(args, upstream, mamba, targets["mamba"])
                try:
                    figures = asyncio.run(run.until_sigterm(work))
                except RuntimeError as error:  # every warm-up request failed
                    raise RuntimeError(f"{error}\nMamba's log:\n{mamba.log_tail()}") from None
                signal.signal(signal.SIGTERM, run.terminate)  # the loop reset it when it closed
                if figures is None:
                    raise run.Terminated
                section = {"load": None, "open": "open_streams", "growth": "growth"}[phase]
                result |= {section: figures} if section else figures
                servers[f"mamba ({phase})"] = procs.describe(mamba)
            # After the server stopped: its shutdown is in the log too.
            result.setdefault("log_tails", {})[f"mamba ({phase})"] = mamba.log_tail()
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        result["settings"] = settings | {"MAMBA_SECRET_KEY": "<random per run>"}
        result["servers"] = servers | {"fake-upstream": procs.describe(upstream)}
        result.setdefault("log_tails", {})["fake-upstream"] = upstream.log_tail()
        for floor in floors:
            result["servers"][floor.name] = procs.describe(floor)
            result["log_tails"][floor.name] = floor.log_tail()
    return result


def derive(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The CPU model and the goals, from the pooled levels."""
    by_role = {level.role: level.name for level in levels(args)}
    result["level_names"] = by_role
    result["concurrency"] = list(args.concurrency)
    figures = result.get("levels", {})
    short, long = figures.get(by_role["short"]), figures.get(by_role["ttft"])
    if short and long:
        # Mamba serves nothing while the direct rounds run: its CPU then is background work.
        direct = [figures[n]["direct"] for n in (by_role["short"], by_role["ttft"])]
        idle_cpu = sum(d["processes"]["mamba"]["cpu_s"] for d in direct)
        idle_util = idle_cpu / sum(d["wall_s"] for d in direct)
        result["cpu_model"] = {
            "mamba": stats.cpu_model(short["mamba"], long["mamba"], "mamba", idle_util),
            "fake-upstream": stats.cpu_model(
                short["direct"], long["direct"], "fake-upstream", None
            ),
        }
        for name in FLOORS:
            if name in short and name in long:
                result["cpu_model"][name] = stats.cpu_model(short[name], long[name], name, None)
    result["goals"] = stats.goal_rows(result)
    return result


def errors_of(result: dict[str, Any]) -> dict[str, Any]:
    found = {
        f"{name} {kind}": level[kind]["error_kinds"]
        for name, level in result.get("levels", {}).items()
        for kind in ("direct", "mamba", *FLOORS)
        if kind in level and level[kind]["errors"]
    }
    held = result.get("open_streams") or {}
    if held.get("failed") or held.get("ended_early") or held.get("timed_out"):
        found["open streams"] = {
            "failed": held.get("failed"),
            "ended_early": held.get("ended_early"),
            "timed_out": held.get("timed_out"),
        }
    if (result.get("growth") or {}).get("errors"):
        found["growth"] = {"errors": result["growth"]["errors"]}
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, run.terminate)
    info = report.machine()
    try:
        with tempfile.TemporaryDirectory(prefix="mamba-bench-") as tmp:
            result = benchmark(args, Path(tmp))
    except KeyboardInterrupt as interrupt:
        print("interrupted; all servers stopped", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(interrupt, run.Terminated) else signal.SIGINT)
    except procs.SetupError as error:
        print(f"bench cannot run: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a server did not start, or every warm-up request failed
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    args_dict = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "set"
    }
    result = derive({"machine": info, "args": args_dict, **result}, args)
    result["errors"] = errors_of(result)
    text = report.suite_markdown(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    args.json.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\nraw figures: {args.json} (tables: {args.json.with_suffix('.md')})", file=sys.stderr)
    for name, kinds in result["errors"].items():
        print(f"errors in {name}: {kinds} (server logs: log_tails in the JSON)", file=sys.stderr)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
