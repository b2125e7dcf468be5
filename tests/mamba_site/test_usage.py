"""The usage outbox: records of one moment go to the database in one transaction."""

import asyncio
import time
from datetime import date

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from mamba_site import metrics
from mamba_site import usage as usage_module
from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.models import ApiKeyUsage, FrontendUsage
from mamba_site.services import KEY, UsageTotal, api_key_create, usage_write
from mamba_site.usage import frontend_usage_record, usage_outbox, usage_record

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


async def frontend_written(frontend, requests, within=5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        usage = await FrontendUsage.objects.filter(frontend=frontend).afirst()
        if usage is not None and usage.requests >= requests:
            return usage
        await asyncio.sleep(0.02)
    raise AssertionError(f"{requests} frontend requests not written within {within} s")


async def test_usage_of_keys_and_frontends_of_one_moment_share_one_transaction(
    issue_key, register_frontend, settings
):
    settings.USAGE_WRITE_DELAY_SECONDS = 0.3
    api_key, _ = await issue_key()
    frontend = await register_frontend()
    before = usage_writes()
    usage_record(api_key_id=api_key.pk, input_tokens=10, output_tokens=1, error=False)
    frontend_usage_record(frontend_id=frontend.pk, input_tokens=20, output_tokens=2, error=False)
    frontend_usage_record(frontend_id=frontend.pk, input_tokens=30, output_tokens=3, error=True)
    usage = await frontend_written(frontend, 2)
    assert (usage.requests, usage.input_tokens, usage.output_tokens, usage.errors) == (2, 50, 5, 1)
    assert (await written(api_key, 1)).input_tokens == 10
    assert usage_writes() - before == 1


async def test_frontend_usage_is_kept_and_retried_while_the_database_is_down(
    register_frontend, settings, monkeypatch
):
    settings.USAGE_WRITE_DELAY_SECONDS = 0
    frontend = await register_frontend()
    calls = []

    async def refusing_once(*args, **kwargs):
        calls.append(kwargs["operation"])
        if len(calls) == 1:
            raise DatabaseUnavailable("ConnectionRefusedError")
        return await db_call(*args, **kwargs)

    monkeypatch.setattr(usage_module, "db_call", refusing_once)
    frontend_usage_record(frontend_id=frontend.pk, input_tokens=7, output_tokens=1, error=False)
    usage = await frontend_written(frontend, 1)
    assert (usage.requests, usage.input_tokens) == (1, 7)
    assert calls == ["usage", "usage"]  # kept after the refusal, written by the retry
    assert len(usage_outbox) == 0


async def test_usage_of_a_deleted_frontend_is_dropped_and_counted(
    register_frontend, settings, caplog
):
    settings.USAGE_WRITE_DELAY_SECONDS = 0
    frontend = await register_frontend()
    frontend_id = frontend.pk
    await frontend.adelete()
    dropped = metrics.usage_records_dropped._value.get()
    frontend_usage_record(frontend_id=frontend_id, input_tokens=7, output_tokens=1, error=False)
    left = await usage_outbox.flush(time.monotonic() + 5)
    assert left == 0
    assert metrics.usage_records_dropped._value.get() == dropped + 1
    assert "their API key or frontend was deleted" in caplog.text


def test_usage_write_adds_to_each_owner_and_day_and_skips_deleted_owners():
    first, second, gone = (api_key_create(name=f"key {n}")[0] for n in range(3))
    gone_id = gone.pk
    gone.delete()
    today, yesterday = date(2026, 11, 30), date(2026, 11, 29)
    totals = {
        ((KEY, first.pk), today): UsageTotal(requests=2, input_tokens=10, output_tokens=3),
        ((KEY, first.pk), yesterday): UsageTotal(requests=1, input_tokens=4, errors=1),
        ((KEY, second.pk), today): UsageTotal(requests=5, output_tokens=7, errors=2),
        ((KEY, gone_id), today): UsageTotal(requests=9),
    }
    assert usage_write(totals=totals) == [((KEY, gone_id), today)]
    assert usage_write(totals=totals) == [((KEY, gone_id), today)]  # added to, not replaced
    counters = {
        (usage.api_key_id, usage.day): (
            usage.requests,
            usage.input_tokens,
            usage.output_tokens,
            usage.errors,
        )
        for usage in ApiKeyUsage.objects.all()
    }
    assert counters == {
        (first.pk, today): (4, 20, 6, 0),
        (first.pk, yesterday): (2, 8, 0, 2),
        (second.pk, today): (10, 0, 14, 4),
    }


async def test_usage_written_past_its_deadline_is_counted_once(issue_key, settings, monkeypatch):
    settings.USAGE_WRITE_DELAY_SECONDS = 0
    settings.DATABASE_TIMEOUT_SECONDS = 0.2
    api_key, _ = await issue_key()
    calls = []

    def slow_first(totals):
        calls.append(len(totals))
        with transaction.atomic():
            missing = usage_write.__wrapped__(totals=totals)  # in this transaction
            if len(calls) == 1:
                time.sleep(0.5)  # written, committed only after the call's deadline
        return missing

    monkeypatch.setattr(usage_module, "_write", slow_first)
    usage_record(api_key_id=api_key.pk, input_tokens=5, output_tokens=1, error=False)
    await written(api_key, 1)
    assert await usage_outbox.flush(time.monotonic() + 5) == 0
    await asyncio.sleep(usage_module.FIRST_RETRY_SECONDS + 0.2)  # no retry of the written batch
    usage = await written(api_key, 1)
    assert (usage.requests, usage.input_tokens) == (1, 5)
    assert calls == [1]
    assert len(usage_outbox) == 0
