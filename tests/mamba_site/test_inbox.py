"""`mamba_site.handler.Inbox`: the application's receive queue under `mamba_site.server`."""

import asyncio

import pytest

from mamba_site.handler import Inbox

BODY = {"type": "http.request", "body": b"{}", "more_body": False}
DISCONNECT = {"type": "http.disconnect"}


async def test_messages_come_out_in_order_whether_queued_or_awaited():
    inbox = Inbox()
    inbox.put_nowait(BODY)
    assert await inbox.get() is BODY
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(DISCONNECT)
    assert await asyncio.wait_for(waiting, 1) is DISCONNECT


async def test_a_getter_cancelled_as_its_message_arrives_leaves_the_message_queued():
    inbox = Inbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(DISCONNECT)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(inbox.get(), 1) is DISCONNECT


async def test_one_get_at_a_time():
    inbox = Inbox()
    first = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already"):
        await inbox.get()
    inbox.put_nowait(BODY)
    assert await first is BODY


async def test_leave_cancels_the_watcher_once_and_says_why():
    inbox = Inbox()
    watched = asyncio.create_task(asyncio.sleep(30))
    inbox.watcher = watched
    inbox.leave()
    with pytest.raises(asyncio.CancelledError):
        await watched
    assert inbox.client_left


async def test_leave_without_a_watcher_only_notes_it():
    inbox = Inbox()
    inbox.leave()
    assert inbox.client_left
