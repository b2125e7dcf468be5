"""The suite's arithmetic (bench/stats.py): no servers, no timing."""

from bench.load import Outcome, RunResult
from bench.stats import cpu_model, fit, goal_rows, growth, pool_rounds, steady


def outcome(index, started, total, ttft=0.01, ok=True):
    return Outcome(ok=ok, ttft_s=ttft, total_s=total, index=index, started_s=started, tokens=5)


def closed_loop(concurrency, requests, seconds):
    """`concurrency` workers, each request `seconds` long, back to back."""
    return [
        outcome(i, (i // concurrency) * seconds, seconds, ttft=0.1 if i < concurrency else 0.01)
        for i in range(requests)
    ]


def test_steady_rate_of_a_closed_loop_is_concurrency_over_duration():
    later, rate = steady(closed_loop(4, 40, 0.5), 4)

    assert rate == 8.0
    assert len(later) == 36


def test_steady_leaves_the_opening_burst_out_of_latency():
    later, _ = steady(closed_loop(4, 40, 0.5), 4)

    assert {o.ttft_s for o in later} == {0.01}


def test_steady_has_no_rate_without_a_window_after_the_first_wave():
    _, rate = steady(closed_loop(4, 8, 0.5), 4)

    assert rate is None


def test_fit_finds_fixed_and_per_chunk_cost():
    assert fit((5, 2.0), (50, 5.6)) == {"fixed_cpu_ms": 1.6, "cpu_us_per_chunk": 80.0}


def level(cpu_s, chunks, requests=10, wall=1.0):
    outcomes = [
        Outcome(ok=True, ttft_s=0.01, total_s=0.1, index=i, tokens=chunks) for i in range(requests)
    ]
    result = RunResult(outcomes, wall, 0.1)
    processes = {
        "mamba": {
            "cpu_s": cpu_s,
            "peak_rss_kib": 1024,
            "rss_before_kib": 1000,
            "rss_after_kib": 1000,
        }
    }
    used = {"tasks": cpu_s + 0.1, "interrupts": 0.0, "steal": 0.0}
    return pool_rounds([{"result": result, "processes": processes, "system_used": used}], 1)


def test_cpu_model_subtracts_idle_cpu_over_the_streams_wall_time():
    model = cpu_model(level(0.02, 5), level(0.056, 50), "mamba", idle_util=0.001)

    assert model["fixed_cpu_ms"] == 1.6
    assert model["net_fixed_cpu_ms"] == 1.5


def test_growth_compares_rss_after_warmup_with_the_end():
    samples = [{"streams": n, "rss_kib": kib} for n, kib in ((0, 90), (100, 100), (300, 104))]

    figures = growth(samples, 100)

    assert (figures["streams_after_warmup"], figures["growth_pct"]) == (200, 4.0)


def test_goal_rows_judge_throughput_as_a_ratio_to_direct():
    figures = {"streams_per_s": 100.0, "latency": {}, "processes": {}}
    result = {
        "levels": {"c50": {"direct": figures, "mamba": figures | {"streams_per_s": 89.0}}},
        "level_names": {"low": "c50"},
        "concurrency": [50, 200],
    }

    (row,) = [r for r in goal_rows(result) if r["figure"].startswith("streams/s")]

    assert (row["vs"], row["met"]) == (0.89, False)


def test_goal_rows_show_the_floors_beside_the_cpu_goals():
    result = {
        "cpu_model": {
            "mamba": {"fixed_cpu_ms": 2.0, "cpu_us_per_chunk": 100.0},
            "fake-upstream": {"fixed_cpu_ms": 1.0, "cpu_us_per_chunk": 90.0},
            "floor": {"fixed_cpu_ms": 0.9, "cpu_us_per_chunk": 60.0},
            "push-floor": {"fixed_cpu_ms": 0.4, "cpu_us_per_chunk": 40.0},
            "push-translator": {"fixed_cpu_ms": 0.5, "cpu_us_per_chunk": 65.0},
        }
    }

    rows = {row["figure"].split(" (")[0]: row for row in goal_rows(result)}

    assert rows["fixed CPU ms per request"]["floor"] == 0.9
    assert rows["CPU µs per chunk arriving alone"]["floor"] == 60.0
    assert rows["CPU µs per chunk arriving alone"]["push_floor"] == 40.0
    assert rows["CPU µs per chunk arriving alone"]["push_translator"] == 65.0
    assert rows["fixed CPU ms per request"]["push_translator"] == 0.5
    assert rows["CPU µs per chunk arriving alone"]["vs_floor"] == round(100.0 / 60.0, 3)
    assert rows["fixed CPU ms per request"]["vs_floor"] == round(2.0 / 0.9, 3)
    assert (
        rows["CPU µs per chunk arriving alone"]["vs"],
        rows["fixed CPU ms per request"]["met"],
    ) == (
        1.111,
        False,
    )
