"""The A/B comparison (bench/ab.py): its worktree and its table; no servers."""

import pytest

from bench import ab


def goals(ttft_added, ratio, kib):
    return {
        "goals": [
            {
                "figure": "time to first token p50, 1 stream (ms)",
                "mamba": 9.1,
                "vs": ttft_added,
                "vs_kind": "added_ms",
                "goal": "≤ +2 ms",
                "met": ttft_added <= 2,
            },
            {
                "figure": "streams/s at 50",
                "mamba": 150.0,
                "vs": ratio,
                "vs_kind": "ratio",
                "goal": "≥ 0.9x",
                "met": ratio >= 0.9,
            },
            {
                "figure": "memory per open stream (KiB)",
                "mamba": kib,
                "vs": None,
                "vs_kind": "",
                "goal": "≤ 30",
                "met": kib <= 30,
            },
        ]
    }


def test_table_shows_every_run_of_both_sides_per_goal():
    runs = {
        "main (abc)": [goals(4.5, 0.7, 36.6), goals(4.2, 0.75, 36.8)],
        "this checkout": [goals(1.9, 0.92, 29.3), goals(2.1, 0.95, 29.4)],
    }
    lines = ab.table(("main (abc)", "this checkout"), runs).splitlines()
    assert lines[0] == "| | goal | main (abc) | this checkout |"
    assert lines[2] == (
        "| time to first token p50, 1 stream (ms) | ≤ +2 ms | 9.1 (+4.5) ✗, 9.1 (+4.2) ✗ "
        "| 9.1 (+1.9), 9.1 (+2.1) ✗ |"
    )
    assert (
        lines[3]
        == "| streams/s at 50 | ≥ 0.9x | 150 (0.7x) ✗, 150 (0.75x) ✗ | 150 (0.92x), 150 (0.95x) |"
    )
    assert lines[4] == "| memory per open stream (KiB) | ≤ 30 | 36.6 ✗, 36.8 ✗ | 29.3, 29.4 |"


def test_a_goal_measured_on_one_side_only_shows_a_dash_on_the_other():
    runs = {"a": [goals(1, 1, 1)], "b": [{"goals": []}]}
    assert ab.table(("a", "b"), runs).splitlines()[-1].endswith("| 1 | - |")


def test_worktree_holds_the_ref_and_is_removed_after(tmp_path):
    if not (ab.procs.REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    with ab.worktree("HEAD", tmp_path) as path:
        assert (path / "manage.py").is_file()
        assert str(path) in ab.git("worktree", "list")
    assert not path.exists()
    assert str(path) not in ab.git("worktree", "list")


def test_suite_options_that_bench_ab_sets_are_refused(capsys):
    with pytest.raises(SystemExit):
        ab.parse_args(["main", "--checkout", "../other", "--quick"])
    assert "set by bench.ab" in capsys.readouterr().err
    args, suite_args = ab.parse_args(["main", "--runs", "3", "--quick", "--server", "serve"])
    assert (args.ref, args.runs) == ("main", 3)
    assert suite_args == ["--quick", "--server", "serve"]


def test_a_figure_shows_the_floor_of_its_run_where_it_was_measured():
    row = {"mamba": 130.9, "vs": 0.895, "vs_kind": "ratio", "met": False, "floor": 92.58}
    assert ab.figure(row) == "130.9 (0.895x) [floor 92.58] ✗"
    assert ab.figure(row | {"push_floor": 44.4}) == "130.9 (0.895x) [floor 92.58, push 44.4] ✗"
    assert (
        ab.figure(row | {"push_translator": 70.5}) == "130.9 (0.895x) [floor 92.58, push tr 70.5] ✗"
    )
