"""A public chat page in headless Chromium: the AI SDK's `DefaultChatTransport` with no headers
against Mamba in `api_key,origin` mode. From a registered origin it streams a reply; from an
unregistered one the browser blocks it (no CORS grant) and the server answers 401.

The page and the SDK are served by a small HTTP server on another port: `ai` and its imports
straight from tests/e2e/node/node_modules as ES modules (CommonJS files wrapped), through an
import map that tests/e2e/node/importmap.mjs resolves as a bundler would. One server, two
origins: http://127.0.0.1:<port> is registered, http://localhost:<port> is not."""

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.e2e.conftest import (
    NODE_DIR,
    REPO_ROOT,
    FakeUpstreamProcess,
    Service,
    daphne_env,
    running_service,
)

FRONTEND = "e2e-page"
PROMPT = "hello from the page"
PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>A public chat page</title>
<script type="importmap">{import_map}</script>
<p id="status">loading</p>
<div id="reply"></div>
<pre id="error"></pre>
<script type="module">
import {{ DefaultChatTransport, readUIMessageStream }} from "ai";

const status = document.getElementById("status");
const text = message =>
  message.parts.filter(part => part.type === "text").map(part => part.text).join("");
try {{
  // As a page built on useChat configures it: the URL, and no headers or credentials.
  const transport = new DefaultChatTransport({{ api: {chat_url} }});
  status.textContent = "sending";
  const stream = await transport.sendMessages({{
    trigger: "submit-message",
    chatId: "page-chat",
    messageId: undefined,
    messages: [{{ id: "u1", role: "user", parts: [{{ type: "text", text: {prompt} }}] }}],
    abortSignal: undefined,
  }});
  status.textContent = "streaming";
  for await (const message of readUIMessageStream({{ stream, terminateOnError: true }})) {{
    document.getElementById("reply").textContent = text(message);
  }}
  status.textContent = "done";
}} catch (error) {{
  document.getElementById("error").textContent = `${{error.name}}: ${{error.message}}`;
  status.textContent = "error";
}}
</script>
</html>
"""


class PageHandler(BaseHTTPRequestHandler):
    """`/`: the page; `/node_modules/...`: files of tests/e2e/node/node_modules; `/cjs/...`:
    the ES module wrappers of its CommonJS files."""

    def __init__(
        self, *args: Any, page: bytes, modules: Path, wrappers: dict[str, str], **kwargs: Any
    ) -> None:
        self.page = page
        self.modules = modules
        self.wrappers = wrappers
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.reply(200, "text/html; charset=utf-8", self.page)
            return
        if path in self.wrappers:
            self.reply(200, "text/javascript; charset=utf-8", self.wrappers[path].encode())
            return
        if path.startswith("/node_modules/"):
            file = (self.modules / path.removeprefix("/node_modules/")).resolve()
            if file.is_relative_to(self.modules) and file.is_file():
                kind = "application/json" if file.suffix == ".json" else "text/javascript"
                self.reply(200, f"{kind}; charset=utf-8", file.read_bytes())
                return
        self.reply(404, "text/plain", b"not found")

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origin_service(
    fake_upstream: FakeUpstreamProcess,
    e2e_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    settings = {
        "MAMBA_AUTH__MODE": "api_key,origin",
        "MAMBA_OPENAI__BASE_URL": fake_upstream.base_url,
        # The frontend is registered by another process: seen within a second.
        "MAMBA_AUTH__KEY_CACHE_SECONDS": "1",
    }
    env = daphne_env(e2e_database_url, settings)
    log_path = tmp_path_factory.mktemp("origin-daphne") / "daphne.log"
    with running_service(env, log_path, probe="/health/live") as started:
        yield started


@pytest.fixture(scope="module")
def page_server(node_client: Path, origin_service: Service) -> Iterator[int]:
    """The page's server on a free port of 127.0.0.1 (also reached as localhost)."""
    result = subprocess.run(
        ["node", "importmap.mjs", "ai"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"importmap.mjs failed:\n{result.stderr}", pytrace=False)
    loading = json.loads(result.stdout)
    page = PAGE.format(
        import_map=json.dumps(loading["importMap"]),
        chat_url=json.dumps(origin_service.chat_url),
        prompt=json.dumps(PROMPT),
    ).encode()
    modules = (NODE_DIR / "node_modules").resolve()
    handler = partial(PageHandler, page=page, modules=modules, wrappers=loading["modules"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def registered_origin(origin_service: Service, page_server: int) -> str:
    """http://127.0.0.1:<page port>, registered with `manage.py createfrontend`."""
    origin = f"http://127.0.0.1:{page_server}"
    forget = (
        "from mamba_site.models import Frontend; "
        f"Frontend.objects.filter(name='{FRONTEND}').delete()"
    )
    manage = [sys.executable, "manage.py"]
    run = partial(
        subprocess.run, cwd=REPO_ROOT, env=origin_service.env, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
    run([*manage, "shell", "-c", forget])
    run([*manage, "createfrontend", FRONTEND, "--origins", origin, "--agents", "main"])
    return origin


def open_page(browser: Browser, origin: str) -> tuple[Page, list[Request], list[str]]:
    """The page from `origin`, with its requests to /chat and its console's lines."""
    page = browser.new_page()
    chat_requests: list[Request] = []
    console: list[str] = []
    page.on("request", lambda r: chat_requests.append(r) if r.url.endswith("/chat") else None)
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{origin}/")
    return page, chat_requests, console


def post_chat(service: Service, origin: str) -> tuple[int, dict[str, str], Any]:
    body = {"messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
    request = urllib.request.Request(
        service.chat_url,
        data=json.dumps(body).encode(),
        headers={"Origin": origin, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_page_on_a_registered_origin_streams_a_reply_without_credentials(
    browser: Browser,
    registered_origin: str,
    origin_service: Service,
    fake_upstream: FakeUpstreamProcess,
) -> None:
    fake_upstream.reset()
    page, chat_requests, _ = open_page(browser, registered_origin)
    expect(page.locator("#status")).to_have_text("done", timeout=20000)
    expect(page.locator("#reply")).to_have_text(f"Echo: {PROMPT}")
    [sent] = [r.all_headers() for r in chat_requests if r.method == "POST"]
    assert sent["origin"] == registered_origin
    assert not {"authorization", "x-api-key", "cookie"} & set(sent)
    assert len(fake_upstream.requests()) == 1
    log = origin_service.wait_for_log(f"frontend:{FRONTEND}", '"path": "/chat"')
    [line] = [json.loads(x) for x in log.splitlines() if f"frontend:{FRONTEND}" in x]
    assert (line["status"], line["client"]) == (200, "127.0.0.1")
    page.close()


def test_page_on_an_unregistered_origin_is_refused(
    browser: Browser,
    registered_origin: str,
    origin_service: Service,
    page_server: int,
    fake_upstream: FakeUpstreamProcess,
) -> None:
    fake_upstream.reset()
    unregistered = f"http://localhost:{page_server}"
    page, _, console = open_page(browser, unregistered)
    expect(page.locator("#status")).to_have_text("error", timeout=20000)
    expect(page.locator("#error")).to_contain_text("fetch")
    expect(page.locator("#reply")).to_have_text("")
    # The browser asked (the preflight got no CORS grant) and never sent the chat.
    assert any("blocked by CORS policy" in text for text in console), console
    assert fake_upstream.requests() == []
    page.close()

    status, headers, body = post_chat(origin_service, unregistered)
    assert (status, body["code"]) == (401, "AUTH_REQUIRED")
    assert "Access-Control-Allow-Origin" not in headers
    assert "not a registered frontend" in body["detail"]
