"""Two versions of Mamba measured in turn by the same suite:
`python -m bench.ab REF [--runs N] [--json PATH] [suite options]`.

REF (a commit, branch or tag of this repository) is checked out into a temporary git worktree
and served from there; the other side is this checkout as it is (uncommitted changes
included). The suite (`bench.suite`, this checkout's, with its fake upstream) runs against
REF, then this checkout, then REF again..., so that a machine whose speed drifts weighs on
both alike; the table shows every run's figure for each goal, side by side. Both run on this
venv: a REF whose requirements differ needs them installed first.
"""

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench import procs, run, stats
from bench.procs import FLOORS

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "ab.json"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ref", help="the version to compare with (commit, branch or tag)")
    parser.add_argument("--runs", type=int, default=2, help="suite runs per side (default 2)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args, suite_args = parser.parse_known_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if "--checkout" in {arg.split("=")[0] for arg in suite_args}:
        parser.error("--checkout is set by bench.ab")
    return args, suite_args


def git(*args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=procs.REPO_ROOT, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise procs.SetupError(f"git {' '.join(args)}: {completed.stderr.strip()}")
    return completed.stdout.strip()


def describe_here() -> str:
    head = git("rev-parse", "--short", "HEAD")
    return f"{head} + changes" if git("status", "--porcelain", "--untracked-files=no") else head


@contextlib.contextmanager
def worktree(ref: str, parent: Path) -> Iterator[Path]:
    """REF checked out (detached) under `parent`; removed afterwards."""
    path = parent / "ref"
    git("worktree", "add", "--detach", "--quiet", str(path), ref)
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))


def run_suite(checkout: Path, json_path: Path, suite_args: list[str]) -> dict[str, Any]:
    """One suite run against `checkout`; its result (the suite's exit status noted)."""
    command = [sys.executable, "-m", "bench.suite", "--checkout", str(checkout)]
    command += ["--json", str(json_path), *suite_args]
    completed = subprocess.run(command, cwd=procs.REPO_ROOT, check=False)
    if completed.returncode not in (0, 1) or not json_path.exists():
        raise RuntimeError(f"bench.suite exited with {completed.returncode} ({checkout})")
    result: dict[str, Any] = orjson.loads(json_path.read_bytes())
    result["exit_status"] = completed.returncode
    return result


def figure(row: dict[str, Any]) -> str:
    """A goal row's figure: Mamba's, how it compares with direct when the row says, and the
    floor proxies' figures in the same run where they were measured."""
    value = row.get("mamba")
    text = "-" if value is None else f"{value:g}"
    vs, kind = row.get("vs"), row.get("vs_kind")
    if vs is not None and kind == "ratio":
        text += f" ({vs:g}x)"
    elif vs is not None and kind == "added_ms":
        text += f" (+{vs:g})"
    floors = [
        f"{short} {row[key]:g}"
        for key, short in ((stats.floor_key(name), floor.short) for name, floor in FLOORS.items())
        if row.get(key) is not None
    ]
    if floors:
        text += f" [{', '.join(floors)}]"
    return text + ("" if row.get("met") is not False else " ✗")


def table(names: tuple[str, str], runs: dict[str, list[dict[str, Any]]]) -> str:
    """One row per goal: the goal, then each side's runs in order."""
    order: list[str] = []
    cells: dict[str, dict[str, list[str]]] = {}
    for side in names:
        for result in runs[side]:
            for row in result.get("goals", []):
                if row["figure"] not in cells:
                    order.append(row["figure"])
                    cells[row["figure"]] = {"goal": [row["goal"]]} | {n: [] for n in names}
                cells[row["figure"]][side].append(figure(row))
    lines = [
        f"| | goal | {names[0]} | {names[1]} |",
        "|---|---|---|---|",
    ]
    for name in order:
        row = cells[name]
        lines.append(
            f"| {name} | {row['goal'][0]} | {', '.join(row[names[0]]) or '-'} "
            f"| {', '.join(row[names[1]]) or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, suite_args = parse_args(argv)
    signal.signal(signal.SIGTERM, run.terminate)
    try:
        ref_name = f"{args.ref} ({git('rev-parse', '--short', args.ref + '^{commit}')})"
        here_name = f"this checkout ({describe_here()})"
        names = (ref_name, here_name)
        runs: dict[str, list[dict[str, Any]]] = {ref_name: [], here_name: []}
        with (
            tempfile.TemporaryDirectory(prefix="mamba-ab-") as tmp,
            worktree(args.ref, Path(tmp)) as ref_root,
        ):
            for index in range(args.runs):
                sides = ((ref_name, ref_root, "ref"), (here_name, procs.REPO_ROOT, "here"))
                for name, root, tag in sides:
                    print(f"ab: run {index + 1} of {args.runs}: {name}", file=sys.stderr)
                    path = Path(tmp) / f"{tag}-{index}.json"
                    runs[name].append(run_suite(root, path, suite_args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (procs.SetupError, RuntimeError) as error:
        print(f"bench.ab cannot run: {error}", file=sys.stderr)
        return 2
    text = table(names, runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps({"sides": list(names), "runs": runs}))
    args.json.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\nraw figures: {args.json} (table: {args.json.with_suffix('.md')})", file=sys.stderr)
    return 1 if any(r["exit_status"] for side in runs.values() for r in side) else 0


if __name__ == "__main__":
    sys.exit(main())
