"""Benchmark Mamba's /chat against the fake OpenAI upstream it proxies: `python -m bench.run`."""

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

from bench import load, procs, report, stats

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
TTFT_REQUESTS, TTFT_CONCURRENCY, TTFT_CHUNKS = 50, 5, 5
WARMUP_CHUNKS = 20


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    target: str  # "direct" or "mamba"
    chunks: int
    requests: int
    concurrency: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight")
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per reply")
    parser.add_argument("--warmup", type=int, default=0, help="warm-up requests (0: 2 x conc.)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="upstream pause between chunks (s)"
    )
    parser.add_argument(
        "--server", choices=sorted(procs.SERVERS), default="daphne", help="how to serve Mamba"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="`mamba_site.serve --workers N` (--server serve)"
    )
    parser.add_argument(
        "--auth", choices=("none", "api_key"), default="none", help="Mamba's auth mode"
    )
    parser.add_argument("--no-ttft", action="store_true", help="skip the small TTFT scenarios")
    args = parser.parse_args(argv)
    if min(args.concurrency, args.requests, args.chunks) < 1:
        parser.error("--concurrency, --requests and --chunks must be at least 1")
    return args


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen = [
        Scenario("direct", "direct", args.chunks, args.requests, args.concurrency),
        Scenario("mamba", "mamba", args.chunks, args.requests, args.concurrency),
    ]
    if not args.no_ttft:
        small = (TTFT_CHUNKS, TTFT_REQUESTS, TTFT_CONCURRENCY)
        chosen += [
            Scenario("direct-ttft", "direct", *small),
            Scenario("mamba-ttft", "mamba", *small),
        ]
    return chosen


def targets(
    upstream: procs.Server, mamba: procs.Server, api_key: str | None = None
) -> dict[str, load.Target]:
    return {
        "direct": load.Target("direct", f"{upstream.origin}/v1/chat/completions"),
        "mamba": load.Target("mamba", f"{mamba.origin}/chat", api_key=api_key),
    }


async def warm_up(
    clients: load.Clients,
    target: load.Target,
    count: int,
    conc: int,
    chunks: int = WARMUP_CHUNKS,
) -> None:
    """Open the connection pools (client -> target, Mamba -> upstream) and warm the code paths."""
    result = await load.run_load(clients, target, f"bench:{chunks}", count, conc)
    failed = [o.error for o in result.outcomes if not o.ok]
    if len(failed) == len(result.outcomes):
        answer = ""
        with contextlib.suppress(httpx.HTTPError, OSError):
            async with load.make_client(1) as probe:  # one more, to show what the server says
                body = target.body(f"bench:{chunks}")
                response = await probe.post(target.url, json=body, headers=target.headers)
            answer = f" (one more: HTTP {response.status_code} {response.text[:300]!r})"
        raise RuntimeError(f"Every warm-up request to {target.url} failed: {failed[0]}{answer}")


async def run_scenario(
    client: httpx.AsyncClient, scenario: Scenario, target: load.Target, servers: list[procs.Server]
) -> tuple[dict[str, Any], list[load.Outcome]]:
    peak_reset = {s.name: procs.reset_peak_rss(s.pid) for s in servers}
    before = {s.name: procs.sample_tree(s.pid) for s in servers}
    system_before = procs.system_cpu()
    text = f"bench:{scenario.chunks}"
    result = await load.run_load(client, target, text, scenario.requests, scenario.concurrency)
    system_after = procs.system_cpu()
    system_used = {key: system_after[key] - system_before[key] for key in system_after}
    after = {s.name: procs.sample_tree(s.pid) for s in servers}
    figures = {
        s.name: stats.process_figures(before[s.name], after[s.name], result, peak_reset[s.name])
        for s in servers
    }
    summary = stats.summarize(result, figures)
    summary["system"] = stats.system_figures(system_used, summary["processes"], result.wall_s)
    return summary, result.outcomes


async def run_all(
    args: argparse.Namespace, upstream: procs.Server, mamba: procs.Server, api_key: str | None
) -> dict[str, Any]:
    by_kind = targets(upstream, mamba, api_key)
    servers = [upstream, mamba]
    summaries: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    warmed: set[str] = set()
    async with load.make_client(args.concurrency) as client:
        for scenario in scenarios(args):
            target = by_kind[scenario.target]
            if scenario.target not in warmed:
                count = args.warmup or 2 * args.concurrency
                await warm_up(client, target, count, args.concurrency)
                warmed.add(scenario.target)
            print(f"running {scenario.name} ...", file=sys.stderr, flush=True)
            summary, outcomes = await run_scenario(client, scenario, target, servers)
            summaries[scenario.name] = {"scenario": asdict(scenario)} | summary
            raw[scenario.name] = stats.raw(outcomes)
    return {"scenarios": summaries, "raw": raw}


def ratios(scenarios_: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pairs = {"load": ("direct", "mamba"), "ttft": ("direct-ttft", "mamba-ttft")}
    return {
        name: stats.compare(scenarios_[direct], scenarios_[mamba])
        for name, (direct, mamba) in pairs.items()
        if direct in scenarios_ and mamba in scenarios_
    }


def cost_models(scenarios_: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fixed and per-chunk CPU of each server, from the short-reply and long-reply scenarios."""
    fits = {"mamba": ("mamba-ttft", "mamba"), "fake-upstream": ("direct-ttft", "direct")}
    return {
        name: stats.cost_model(scenarios_[small], scenarios_[large], name)
        for name, (small, large) in fits.items()
        if small in scenarios_ and large in scenarios_
    }


async def until_sigterm(run: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | None:
    """Await `run`; None if SIGTERM cancelled it (so that it unwinds as on Ctrl-C)."""
    task = asyncio.current_task()
    assert task is not None
    terminated = asyncio.Event()

    def on_sigterm() -> None:
        terminated.set()
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await run
    except asyncio.CancelledError:
        if not terminated.is_set():  # Ctrl-C: asyncio.run raises KeyboardInterrupt
            raise
        return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: asyncio cancels the run, the servers are stopped."""


def terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start both servers, run every scenario, stop both servers (also on errors/Ctrl-C)."""
    procs.check_server_options(args.server, args.workers)
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(procs.upstream(workdir, args.chunk_delay))
        settings = procs.mamba_env(upstream, workdir, max(64, 2 * args.concurrency), args.auth)
        procs.migrate(settings, workdir)
        api_key = procs.create_api_key(settings, workdir) if args.auth == "api_key" else None
        mamba = stack.enter_context(
            procs.mamba(settings, workdir, args.server, workers=args.workers, migrated=True)
        )
        started = time.perf_counter()
        result = asyncio.run(until_sigterm(run_all(args, upstream, mamba, api_key)))
        signal.signal(signal.SIGTERM, terminate)  # the loop reset it when it closed
        if result is None:
            raise Terminated
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        result["settings"] = settings | {"MAMBA_SECRET_KEY": "<random per run>"}
        result["servers"] = {s.name: procs.describe(s) for s in (upstream, mamba)}
        result["log_tails"] = {s.name: s.log_tail() for s in (upstream, mamba)}
        return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    info = report.machine()
    try:
        with tempfile.TemporaryDirectory(prefix="mamba-bench-") as tmp:
            result = benchmark(args, Path(tmp))
    except KeyboardInterrupt as interrupt:
        print("interrupted; both servers stopped", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
    except procs.SetupError as error:
        print(f"bench cannot run: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a server did not start, or every warm-up request failed
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    args_dict = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    figures = result["scenarios"]
    result = {"machine": info, "args": args_dict, **result, "ratios": ratios(figures)}
    result["cpu_cost_model"] = cost_models(figures)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report.markdown(result))
    print(f"\nraw figures: {args.json}", file=sys.stderr)
    errors = {n: s["error_kinds"] for n, s in result["scenarios"].items() if s["errors"]}
    for name, kinds in errors.items():
        print(f"errors in {name}: {kinds} (server logs: log_tails in the JSON)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
