"""The admin in headless Chromium (Debian's package, driven by Playwright): log in, edit an
agent's prompt, open its playground, stream a reply and see the chart it renders."""

import subprocess
import sys

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import REPO_ROOT, FakeUpstreamProcess, Service

PASSWORD = "browser-test-password"


@pytest.fixture(scope="module")
def staff_user(service: Service) -> str:
    username = "browser-admin"
    script = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        f"U.objects.filter(username='{username}').delete(); "
        f"U.objects.create_superuser('{username}', 'admin@example.test', '{PASSWORD}')"
    )
    subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", script],
        cwd=REPO_ROOT,
        env=service.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return username


@pytest.fixture
def page(browser: Browser, service: Service, staff_user: str) -> Page:
    context = browser.new_context(base_url=service.url)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", staff_user)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    yield page
    context.close()


def open_agent(page: Page, slug: str) -> None:
    page.goto("/admin/agents/agent/")
    page.click(f'#result_list a:text-is("{slug}")')
    expect(page.locator("#id_slug")).to_have_value(slug)


def test_admin_edits_prompt_and_playground_streams_a_chart(
    page: Page, fake_upstream: FakeUpstreamProcess
) -> None:
    open_agent(page, "main")
    page.fill("#id_system_prompt", "You are the browser-tested assistant. Marker PROMPT-7731.")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(page.locator("text=Restore version 1")).to_be_visible()

    fake_upstream.reset()
    page.click("text=Open the playground")
    page.fill("#prompt", "Please draw a chart of fruit sales")
    page.click("#send")

    expect(page.locator("#status")).to_have_text("done", timeout=15000)
    assistant = page.locator(".msg.assistant")
    expect(assistant.locator(".text").first).to_contain_text("Here is the chart.")
    chart = assistant.locator("svg.chart")
    expect(chart).to_be_visible()
    expect(chart.locator("rect")).to_have_count(2)
    expect(chart).to_contain_text("apples (10)")
    expect(assistant.locator(".tool[data-tool=generateChart] pre.input")).to_contain_text(
        '"chartType": "bar"'
    )
    # The follow-up step after the tool result streamed too.
    expect(assistant.locator(".step")).to_have_count(2)
    expect(assistant).to_contain_text("Done: the tool returned a result.")
    stats = page.locator("#stats")
    expect(stats).to_contain_text("model gpt-4o")
    expect(stats).to_contain_text("first token")

    first = fake_upstream.requests()[0]
    assert first["messages"][0] == {
        "role": "system",
        "content": "You are the browser-tested assistant. Marker PROMPT-7731.",
    }


def test_admin_playground_shows_reasoning_and_keeps_the_conversation(
    page: Page, fake_upstream: FakeUpstreamProcess
) -> None:
    open_agent(page, "main")
    page.click("text=Open the playground")
    page.fill("#prompt", "reason about it")
    page.click("#send")
    expect(page.locator("#status")).to_have_text("done", timeout=15000)
    expect(page.locator(".msg.assistant .reasoning")).to_contain_text("Let me think.")
    fake_upstream.reset()
    page.fill("#prompt", "and again")
    page.click("#send")
    expect(page.locator(".msg.assistant")).to_have_count(2)
    expect(page.locator("#status")).to_have_text("done", timeout=15000)
    history = fake_upstream.requests()[0]["messages"]
    assert [m["role"] for m in history[1:]] == ["user", "assistant", "user"]
    assert history[2]["content"] == "The answer is 42."


def test_admin_agent_form_shows_validation_error_in_the_browser(page: Page) -> None:
    open_agent(page, "research")
    page.fill("#id_model", "no-such-model")
    page.click("input[name=_continue]")
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-model .errorlist")).to_contain_text("Unknown model 'no-such-model'")


def test_admin_issues_a_key_shown_once_with_a_working_copy_button(page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/admin/mamba_site/apikey/add/")
    page.fill("#id_name", "browser-issued key")
    page.fill("#id_allowed_agents", "main")
    page.click("input[name=_save]")
    secret_field = page.locator("#api-key-secret")
    expect(secret_field).to_be_visible()
    secret = secret_field.input_value()
    assert secret.startswith("mamba_")
    expect(page.locator(".errornote")).to_contain_text("only time the key is shown")

    page.click("#copy-api-key")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    page.click("text=I have copied it: go to the key")
    expect(page.locator("#content")).to_contain_text("browser-issued key")
    assert secret not in page.content()
    page.goto("/admin/mamba_site/apikey/")
    assert secret not in page.content()


def test_admin_index_opens_the_providers_page(page: Page) -> None:
    page.goto("/admin/")
    page.click("#routing-providers a")
    expect(page.locator("h1")).to_have_text("Providers")
    expect(page.locator("#providers-source")).to_have_text("MAMBA_OPENAI__* settings")
    expect(page.locator("#provider-openai")).to_contain_text("MAMBA_OPENAI__API_KEY")
    expect(page.locator("#provider-openai")).to_contain_text("(set)")
    assert "sk-fake" not in page.content()
