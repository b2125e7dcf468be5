import asyncio
import gc
import logging

from mamba_site.background import run_in_background


async def test_run_in_background_runs_the_coroutine_to_its_end():
    started, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def write():
        started.set()
        await release.wait()
        done.set()

    run_in_background(write())
    await started.wait()
    gc.collect()  # the loop holds tasks weakly: the task must survive a collection
    release.set()

    async with asyncio.timeout(1):
        await done.wait()


async def test_run_in_background_logs_a_failure_without_raising(caplog):
    finished = asyncio.Event()

    async def failing():
        finished.set()
        raise RuntimeError("database went away")

    run_in_background(failing())
    await finished.wait()
    await asyncio.sleep(0)

    failures = [r for r in caplog.records if r.name == "mamba_site.background"]
    assert [r.levelno for r in failures] == [logging.ERROR]
    assert failures[0].getMessage() == "Background write failed"
