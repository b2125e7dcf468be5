"""The usage outbox: records of one moment go to the database in one transaction."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from mamba_site import metrics
from mamba_site.models import ApiKeyUsage
from mamba_site.usage import usage_outbox, usage_record

pytestmark = pytest.mark.django_db(transaction=True)


def usage_writes():
    return metrics.database_calls.labels("usage", "ok")._value.get()


async def written(api_key, requests, within=5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        usage = await sync_to_async(ApiKeyUsage.objects.filter(api_key=api_key).first)()
        if usage is not None and usage.requests >= requests:
            return usage
        await asyncio.sleep(0.02)
    raise AssertionError(f"{requests} requests not written within {within} s")


async def test_usage_records_of_one_moment_are_written_in_one_transaction(issue_key, settings):
    settings.USAGE_WRITE_DELAY_SECONDS = 0.3
    api_key, _ = await issue_key()
    before = usage_writes()
    for tokens in (10, 20, 30):
        usage_record(api_key_id=api_key.pk, input_tokens=tokens, output_tokens=1, error=False)
        await asyncio.sleep(0.05)  # requests ending one after another
    usage = await written(api_key, 3)
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (3, 60, 3)
    assert usage_writes() - before == 1


async def test_usage_without_a_delay_is_written_at_once(issue_key, settings):
    settings.USAGE_WRITE_DELAY_SECONDS = 0
    api_key, _ = await issue_key()
    usage_record(api_key_id=api_key.pk, input_tokens=5, output_tokens=1, error=False)
    started = time.monotonic()
    await written(api_key, 1)
    assert time.monotonic() - started < 0.25  # not held back for a delay


async def test_usage_flush_does_not_wait_for_the_delay(issue_key, settings):
    settings.USAGE_WRITE_DELAY_SECONDS = 30
    api_key, _ = await issue_key()
    usage_record(api_key_id=api_key.pk, input_tokens=5, output_tokens=1, error=False)
    await asyncio.sleep(0.05)  # the writer is waiting for more records
    left = await usage_outbox.flush(time.monotonic() + 5)
    assert left == 0
    await written(api_key, 1, within=0.1)
