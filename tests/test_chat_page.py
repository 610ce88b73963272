"""The chat page at ``/`` driven in headless Chromium (Debian's ``chromium`` and
``chromedriver`` through Selenium) against a real gunicorn serving ``main:app``, whose model
is the wire-level fake LLM: sign in, stream an answer, watch the memory the model wrote
appear, edit it (and hit a version conflict), delete it, export and erase.

Chromium comes from ``tools/ensure_chromium.sh`` (``make test`` runs it); without it this
test fails, it is never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from services.auth import ApiKeyStore
from services.db import open_pool
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolUse
from tests.processes import Gunicorn

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("CHAT_PAGE_SCREENSHOTS")  # a folder: keep screenshots there
ANSWER = "Noted: your favourite colour is teal, and I will keep that in mind from now on."


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def gunicorn(database_url, llm):
    """``gunicorn main:app`` as Cloud Run runs it, started (not yet ready: see ``server``)."""
    server = Gunicorn(
        {
            "DATABASE_URL": database_url,
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": llm.anthropic_base_url,
            "LLM_PROVIDERS": "anthropic",
            "EMBED_IN_PROCESS": "false",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_BURST": "1000",
            "REDIS_URL": "",
        },
        wait=False,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(gunicorn, browser) -> str:
    """The base URL once gunicorn serves; Chromium starts while gunicorn imports."""
    gunicorn.wait_until_serving()
    return gunicorn.url


@pytest.fixture(scope="module")
def keys(server, settings) -> ApiKeyStore:
    pool = open_pool(settings)
    yield ApiKeyStore(pool)
    pool.close()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(gunicorn, downloads):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: run tools/ensure_chromium.sh "
            "(apt-get install -y chromium chromium-driver) before the tests"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,860",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


# ---- helpers ------------------------------------------------------------------------------


def new_key(keys: ApiKeyStore) -> tuple[str, str]:
    user = f"page-{uuid.uuid4().hex[:8]}"
    _, secret = keys.create(user)
    return user, secret


def call(base: str, secret: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def css(driver, selector: str):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def visible(driver, selector: str) -> bool:
    return any(element.is_displayed() for element in css(driver, selector))


def text_of(driver, selector: str) -> str:
    elements = css(driver, selector)
    return elements[0].text if elements else ""


def screenshot(driver, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))


def script_errors(driver) -> list[str]:
    """Console errors of the page since the last call, but for the HTTP errors the tests
    provoke on purpose (401, 404, 409: the browser logs those as failed loads)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


def sign_in(driver, base: str, secret: str) -> None:
    driver.get(base + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(base + "/")
    field = wait_for(lambda: css(driver, "#api-key"), what="the sign-in form")[0]
    field.send_keys(secret)
    css(driver, "#sign-in-form button[type=submit]")[0].click()
    wait_for(lambda: visible(driver, "#workspace"), what="the chat workspace")


# Records every text the streaming answer shows, as the page changes it.
RECORD_STREAM = """
window.__snapshots = [];
new MutationObserver(() => {
  const answer = document.querySelector('#messages li.assistant:last-child');
  if (answer && answer.dataset.state === 'streaming') {
    const text = answer.querySelector('.text').textContent;
    const seen = window.__snapshots;
    if (seen[seen.length - 1] !== text) seen.push(text);
  }
}).observe(document.getElementById('messages'),
  {subtree: true, childList: true, characterData: true, attributes: true});
"""


# ---- tests --------------------------------------------------------------------------------


def test_chat_streams_and_memories_follow_live(server, llm, keys, browser):
    driver = browser
    _, secret = new_key(keys)
    llm.reset()
    llm.script(
        "anthropic",
        Reply(
            text="",
            tool_calls=[
                ToolUse(
                    "upsert_memory",
                    {"content": "Favourite colour is teal", "context": "told in chat"},
                )
            ],
        ),
        Reply(text=ANSWER, chunk_delay_s=0.04),
    )
    sign_in(driver, server, secret)
    assert driver.execute_script("return sessionStorage.getItem('memoryAgent.apiKey')") == secret

    # Send a message; the answer streams in word by word.
    driver.execute_script(RECORD_STREAM)
    css(driver, "#message")[0].send_keys("My favourite colour is teal.")
    css(driver, "#send")[0].click()
    if SCREENSHOTS:  # best effort: the answer half-way
        wait_for(lambda: text_of(driver, "#messages li.assistant .text"), what="a first word")
        screenshot(driver, "1-streaming")
    wait_for(
        lambda: css(driver, "#messages li.assistant[data-state=done]"),
        timeout=20,
        what="the answer to finish",
    )
    answer = text_of(driver, "#messages li.assistant .text")
    assert answer == ANSWER
    snapshots = driver.execute_script("return window.__snapshots")
    partial = [s for s in snapshots if s and s != ANSWER]
    assert len(partial) >= 3, snapshots  # several visible updates before the final one
    assert all(ANSWER.startswith(s) for s in partial)
    assert css(driver, "#messages li.assistant .text")[0].get_attribute("aria-live") == "polite"
    assert text_of(driver, "#messages li.user .text") == "My favourite colour is teal."

    # The memory the model wrote is in the list, as the API has it.
    status, listing = call(server, secret, "GET", "/v1/memories")
    assert status == 200
    [memory] = listing["items"]
    assert memory["content"] == "Favourite colour is teal"
    selector = f'#memory-list li[data-id="{memory["id"]}"]'
    wait_for(lambda: css(driver, selector), what="the written memory in the list")
    assert text_of(driver, f"{selector} .content") == "Favourite colour is teal"
    assert text_of(driver, f"{selector} .context") == "told in chat"
    screenshot(driver, "2-answer-and-memory")

    # Edit it inline: a PATCH with the version shown.
    css(driver, f"{selector} button.edit")[0].click()
    field = wait_for(lambda: css(driver, f"{selector} form.editor textarea"), what="the editor")[0]
    assert field.get_attribute("value") == "Favourite colour is teal"
    field.clear()
    field.send_keys("Favourite colour is deep teal")
    css(driver, f"{selector} form.editor button[type=submit]")[0].click()
    wait_for(lambda: not css(driver, f"{selector} form.editor"), what="the editor to close")
    assert text_of(driver, f"{selector} .content") == "Favourite colour is deep teal"
    status, stored = call(server, secret, "GET", f"/v1/memories/{memory['id']}")
    assert (status, stored["content"]) == (200, "Favourite colour is deep teal")
    assert stored["version"] == memory["version"] + 1
    assert text_of(driver, f"{selector} .version") == f"v{stored['version']}"

    # A change made elsewhere while editing: the save gets 409 and the page says so.
    css(driver, f"{selector} button.edit")[0].click()
    field = wait_for(lambda: css(driver, f"{selector} form.editor textarea"), what="the editor")[0]
    status, _ = call(
        server,
        secret,
        "PATCH",
        f"/v1/memories/{memory['id']}",
        {"content": "Favourite colour is green", "version": stored["version"]},
    )
    assert status == 200
    field.clear()
    field.send_keys("Favourite colour is navy")
    css(driver, f"{selector} form.editor button[type=submit]")[0].click()
    conflict = wait_for(
        lambda: text_of(driver, f"{selector} .conflict"), what="the conflict message"
    )
    assert "Conflict" in conflict and "Favourite colour is green" in conflict
    screenshot(driver, "3-edit-conflict")
    status, current = call(server, secret, "GET", f"/v1/memories/{memory['id']}")
    assert current["content"] == "Favourite colour is green"  # nothing overwritten
    css(driver, f"{selector} form.editor button[type=submit]")[0].click()  # save again: wins
    wait_for(lambda: not css(driver, f"{selector} form.editor"), what="the editor to close")
    status, current = call(server, secret, "GET", f"/v1/memories/{memory['id']}")
    assert current["content"] == "Favourite colour is navy"

    # Delete it in the page; the API no longer has it.
    css(driver, f"{selector} button.delete")[0].click()
    wait_for(lambda: not css(driver, selector), what="the memory to leave the list")
    status, body = call(server, secret, "GET", f"/v1/memories/{memory['id']}")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert call(server, secret, "GET", "/v1/memories")[1]["items"] == []
    assert visible(driver, "#memories-empty")
    assert script_errors(driver) == []


def test_memory_events_update_and_remove_items_during_the_turn(server, llm, keys, browser):
    driver = browser
    _, secret = new_key(keys)
    status, kept = call(server, secret, "POST", "/v1/memories", {"content": "Lives in Lyon"})
    assert status == 201
    status, doomed = call(server, secret, "POST", "/v1/memories", {"content": "Owns a bike"})
    assert status == 201
    sign_in(driver, server, secret)
    wait_for(lambda: len(css(driver, "#memory-list li")) == 2, what="two memories listed")
    llm.reset()
    llm.script(
        "anthropic",
        Reply(
            text="",
            tool_calls=[
                ToolUse(
                    "upsert_memory",
                    {"memory_id": kept["id"], "content": "Lives in Marseille", "context": "moved"},
                ),
                ToolUse("delete_memory", {"memory_id": doomed["id"]}),
            ],
        ),
        Reply(text="Updated where you live and forgot the bike.", chunk_delay_s=0.02),
    )
    # Watch the list during the turn, not after the refresh that follows it.
    driver.execute_script(
        """
        window.__listDuringTurn = null;
        new MutationObserver(() => {
          const answer = document.querySelector('#messages li.assistant:last-child');
          if (answer && answer.dataset.state === 'streaming' && !window.__listDuringTurn
              && !document.querySelector('#memory-list li[data-id="' + arguments[0] + '"]')) {
            window.__listDuringTurn = [...document.querySelectorAll('#memory-list .content')]
              .map((p) => p.textContent);
          }
        }).observe(document.getElementById('memory-list'), {subtree: true, childList: true});
        """,
        doomed["id"],
    )
    css(driver, "#message")[0].send_keys("I moved to Marseille and sold my bike.")
    css(driver, "#send")[0].click()
    wait_for(lambda: css(driver, "#messages li.assistant[data-state=done]"), timeout=20)
    during = driver.execute_script("return window.__listDuringTurn")
    assert during == ["Lives in Marseille"], during
    kept_selector = f'#memory-list li[data-id="{kept["id"]}"]'
    assert text_of(driver, f"{kept_selector} .content") == "Lives in Marseille"
    assert not css(driver, f'#memory-list li[data-id="{doomed["id"]}"]')
    assert script_errors(driver) == []


def test_bad_key_error_export_erase_and_sign_out(server, keys, browser, downloads):
    driver = browser
    driver.get(server + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(server + "/")
    css(driver, "#api-key")[0].send_keys("mak_not-a-real-key")
    css(driver, "#sign-in-form button[type=submit]")[0].click()
    error = wait_for(lambda: text_of(driver, "#error"), what="the sign-in error")
    assert "unauthorized" in error
    screenshot(driver, "0-sign-in-error")
    assert not visible(driver, "#workspace")
    assert driver.execute_script("return sessionStorage.getItem('memoryAgent.apiKey')") is None
    assert script_errors(driver) == []

    _, secret = new_key(keys)
    call(server, secret, "POST", "/v1/memories", {"content": "Prefers tea to coffee"})
    sign_in(driver, server, secret)
    wait_for(lambda: len(css(driver, "#memory-list li")) == 1, what="the memory listed")
    assert not visible(driver, "#error")

    # Export downloads the caller's JSON document.
    css(driver, "#export")[0].click()
    exported = wait_for(
        lambda: [p for p in downloads.glob("memory-agent-export-*.json") if p.stat().st_size],
        what="the export download",
    )
    document = json.loads(exported[0].read_text())
    assert "Prefers tea to coffee" in json.dumps(document)

    # Erase asks first; dismissing keeps everything, accepting erases it all.
    css(driver, "#erase")[0].click()
    driver.switch_to.alert.dismiss()
    assert len(call(server, secret, "GET", "/v1/memories")[1]["items"]) == 1
    css(driver, "#erase")[0].click()
    driver.switch_to.alert.accept()
    wait_for(lambda: "erased" in text_of(driver, "#notice"), what="the erase notice")
    assert call(server, secret, "GET", "/v1/memories")[1]["items"] == []
    assert not css(driver, "#memory-list li")
    screenshot(driver, "4-erased")

    css(driver, "#sign-out")[0].click()
    wait_for(lambda: visible(driver, "#sign-in"), what="the sign-in form")
    assert driver.execute_script("return sessionStorage.getItem('memoryAgent.apiKey')") is None
    assert script_errors(driver) == []


def test_the_api_docs_page_lists_every_operation(server, browser):
    browser.get(server + "/docs")
    spec = json.loads(urllib.request.urlopen(server + "/openapi.json", timeout=10).read())
    operations = sum(len(item) for item in spec["paths"].values())
    wait_for(lambda: len(css(browser, ".opblock")) == operations, what="Swagger UI's operations")
    paths = {element.text for element in css(browser, ".opblock-summary-path")}
    assert {"/v1/chat/completions", "/v1/memories/{memory_id}"} <= paths
    screenshot(browser, "docs")
    assert script_errors(browser) == []
