"""Routing and failover through the AI SDK's own clients: two fake providers as processes (the
session's fake upstream is the primary, a second one the backup), a providers file naming
them, and a daphne of this module's own with `MAMBA_CHAT__REPLAY_STEP=true`.

Each faulted request is made once (a module-scoped fixture per fault and SDK) and checked by
several tests: ai 7 sees the failed step replaced on the backup after a `reset-step`; ai 6
(which names its version in User-Agent) gets a truthful error instead; a fault before any
content is served by the backup for every SDK; and the primary's fake is done with the request
within 2 s of the client's end. See PROTOCOL.md and chat/steps.py.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ChatClient,
    FakeUpstreamProcess,
    daphne_env,
    running_fake_upstream,
    running_service,
)
from tests.e2e.test_ai_sdk_client import (
    DONE,
    assert_done_part,
    assert_logged,
    assert_stream_ok,
    chunks_of,
    parts_of,
    types,
)

pytestmark = pytest.mark.e2e

# Every test faults the primary once: it must never rest (cooldown) and so be skipped by the
# next test. One attempt each, one second to start the answer.
PROVIDERS = """
[providers.primary]
base_url = "{primary}"
api_key_env = "E2E_PRIMARY_KEY"
first_byte_timeout_seconds = 1
max_retries = 0
cooldown_failures = 1000

[providers.backup]
base_url = "{backup}"
api_key_env = "E2E_BACKUP_KEY"
first_byte_timeout_seconds = 1
max_retries = 0
cooldown_failures = 1000

[models."gpt-4o"]
targets = ["primary/gpt-4o", "backup/gpt-4o"]
"""
ROUTING_ENV = {
    "MAMBA_CHAT__REPLAY_STEP": "true",
    "MAMBA_CHAT__IDLE_TIMEOUT_SECONDS": "2",
    "MAMBA_CHAT__FIRST_BYTE_TIMEOUT_SECONDS": "5",
    "E2E_PRIMARY_KEY": "sk-e2e-primary",
    "E2E_BACKUP_KEY": "sk-e2e-backup",
}
TEXT = "hello from the routing test"
BACKUP_TEXT = f"Echo: {TEXT}"
PRIMARY_TEXT = "fault fault "  # what the fake streams before a "<kind>:2" fault
CUT_OFF = "The model provider's reply was cut off."
CLOSE_SECONDS = 2.0
# ai 7 replays the step for faults after content; "stall" waits out the 2 s idle timeout.
REPLAYED = ["cut:2", "drop:2", "malformed:2", "stall:2"]
AI_6 = {"6": "6.0.12", "6.0.6": "6.0.6"}


@dataclass
class Run:
    """One chat turn against a faulted primary, and what both fakes saw of it."""

    fault: str
    report: dict[str, Any]
    primary: dict[str, Any]  # the primary's state once it was done with the request
    primary_done: bool  # ... within CLOSE_SECONDS of the client's end
    backup: dict[str, Any]


@pytest.fixture(scope="module")
def backup_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstreamProcess]:
    with running_fake_upstream(tmp_path_factory.mktemp("backup-upstream")) as upstream:
        yield upstream


@dataclass
class Routed:
    """The module's service, its two providers, and the one way the tests use them."""

    chat: ChatClient
    primary: FakeUpstreamProcess
    backup: FakeUpstreamProcess

    def run(self, sdk: str, fault: str) -> Run:
        """One chat turn with `fault` on the primary's next request."""
        self.primary.reset()
        self.backup.reset()
        self.primary.set_fault(fault, times=1)
        report = self.chat(sdk=sdk, text=TEXT)
        done, primary, _ = self.primary.wait_for(
            lambda s: s["active"] == 0 and len(s["requests"]) == 1, timeout=CLOSE_SECONDS
        )
        return Run(fault, report, primary, done, self.backup.state())


@pytest.fixture(scope="module")
def routed(
    node_client: Path,
    fake_upstream: FakeUpstreamProcess,
    backup_upstream: FakeUpstreamProcess,
    e2e_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Routed]:
    folder = tmp_path_factory.mktemp("routing")
    providers = folder / "providers.toml"
    providers.write_text(
        PROVIDERS.format(primary=fake_upstream.base_url, backup=backup_upstream.base_url)
    )
    env = daphne_env(e2e_database_url, {**ROUTING_ENV, "MAMBA_PROVIDERS_FILE": str(providers)})
    with running_service(env, folder / "daphne.log") as service:
        yield Routed(ChatClient(node_client, service), fake_upstream, backup_upstream)


@pytest.fixture(scope="module", params=REPLAYED)
def replayed(request: pytest.FixtureRequest, routed: Routed) -> Run:
    return routed.run("7", request.param)


@pytest.fixture(scope="module", params=list(AI_6))
def ai6_cut(request: pytest.FixtureRequest, routed: Routed) -> Run:
    return routed.run(request.param, "cut:2")


@pytest.fixture(scope="module", params=["7", "6"])
def before_content(request: pytest.FixtureRequest, routed: Routed) -> Run:
    return routed.run(request.param, "status:503")


def text_parts(report: dict[str, Any]) -> list[str]:
    return [part["text"] for part in parts_of(report, "text")]


def assert_primary_done(run: Run) -> None:
    """The primary's fake answers no request any more (it closed or ended the stream)."""
    assert run.primary_done, (
        f"the primary still served the request {CLOSE_SECONDS} s after the client's end "
        f"({run.fault}): {run.primary}"
    )
    if run.fault.startswith(("stall", "hang")):  # only Mamba can end these: it hung up
        assert run.primary["disconnects"] == 1, run.primary
    if run.fault.startswith("malformed"):  # the fake ends this one itself
        assert run.primary["completed"] == 1, run.primary


# -- ai 7: the step is replayed on the backup ----------------------------------------------


def test_routing_ai7_replay_validates_with_one_reset_step(replayed: Run) -> None:
    assert_stream_ok(replayed.report, reset_steps=1)
    assert replayed.report["rawEvents"].count('data: {"type":"reset-step"}') == 1


def test_routing_ai7_replay_shows_only_the_backup_text(replayed: Run) -> None:
    report = replayed.report
    assert PRIMARY_TEXT in "".join(c.get("delta", "") for c in chunks_of(report, "text-delta"))
    assert [p["type"] for p in parts_of(report)] == ["step-start", "text"]
    assert_done_part(parts_of(report, "text")[0], "text", BACKUP_TEXT)
    assert text_parts(report) == [BACKUP_TEXT]
    assert report["fullMessage"]["parts"] == report["message"]["parts"]


def test_routing_ai7_replay_is_served_by_the_backup(replayed: Run, routed: Routed) -> None:
    finish = replayed.report["chunks"][-1]
    assert finish["finishReason"] == "stop"
    assert finish["messageMetadata"]["provider"] == "backup"
    assert len(replayed.primary["requests"]) == 1
    assert len(replayed.backup["requests"]) == 1
    assert replayed.backup["completed"] == 1
    assert_logged(routed.chat.service, replayed.report, "chat finished", "replays=1")


def test_routing_ai7_replay_leaves_the_primary_closed(replayed: Run) -> None:
    assert_primary_done(replayed)


# -- ai 6: no reset-step, a truthful error -------------------------------------------------


def test_routing_ai6_client_names_its_version_in_user_agent(ai6_cut: Run) -> None:
    user_agent = ai6_cut.report["requestHeaders"].get("user-agent", "")
    assert user_agent.startswith(f"ai-sdk/{AI_6[ai6_cut.report['sdk']]} "), user_agent


def test_routing_ai6_never_receives_reset_step(ai6_cut: Run) -> None:
    assert not [e for e in ai6_cut.report["rawEvents"] if "reset-step" in e]
    assert ai6_cut.backup["requests"] == []


def test_routing_ai6_cut_off_ends_with_a_truthful_error(ai6_cut: Run) -> None:
    report = ai6_cut.report
    assert_stream_ok(report, expect_error=True)
    assert types(report)[-2:] == ["error", "finish"]
    assert chunks_of(report, "error") == [{"type": "error", "errorText": CUT_OFF}]
    assert report["streamErrors"] == [CUT_OFF]
    assert report["chunks"][-1]["finishReason"] == "error"
    assert report["rawEvents"][-1] == DONE
    # What was shown stays, closed.
    assert_done_part(parts_of(report, "text")[0], "text", PRIMARY_TEXT)


def test_routing_ai6_cut_off_leaves_the_primary_closed(ai6_cut: Run) -> None:
    assert_primary_done(ai6_cut)


# -- Before any content: every SDK is served by the backup ---------------------------------


def test_routing_fault_before_content_is_served_by_the_backup(before_content: Run) -> None:
    report = before_content.report
    assert_stream_ok(report)
    assert text_parts(report) == [BACKUP_TEXT]
    finish = report["chunks"][-1]
    assert finish["finishReason"] == "stop"
    assert finish["messageMetadata"]["provider"] == "backup"
    assert not [e for e in report["rawEvents"] if "reset-step" in e]


def test_routing_fault_before_content_leaves_the_primary_closed(before_content: Run) -> None:
    assert_primary_done(before_content)
