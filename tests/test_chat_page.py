"""The chat page at ``/`` driven in headless Chromium (Debian's ``chromium`` and
``chromedriver`` through Selenium) against a real gunicorn serving ``main:app``, whose model
is the wire-level fake LLM: sign in, stream an answer, watch the memory the model wrote
appear, edit it (and hit a version conflict), delete it, search memories and read their
relevance, add one by hand, see when each was saved, list and reopen conversations, read
usage and cost, export and erase.

Set ``CHAT_PAGE_SCREENSHOTS=/tmp/chat-page`` to keep a screenshot of each step there.

Chromium comes from ``tools/ensure_chromium.sh`` (``make test`` runs it); without it this
test fails, it is never skipped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

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
        wait_for(
            lambda: text_of(driver, "#messages li.assistant .text"), timeout=20, what="a first word"
        )
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
    assert text_of(driver, f"{selector} .version") == f"edited {stored['version'] - 1}×"
    version_title = css(driver, f"{selector} .version")[0].get_attribute("title")
    assert f"version {stored['version']}" in version_title

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


def percent(score: float) -> str:
    """What the page shows for a 0-1 relevance (JavaScript's Math.round, clamped)."""
    return f"{math.floor(min(max(score, 0.0), 1.0) * 100 + 0.5)}% match"


def test_search_add_by_hand_dates_and_edits(server, keys, browser):
    driver = browser
    _, secret = new_key(keys)
    status, teal = call(
        server,
        secret,
        "POST",
        "/v1/memories",
        {"content": "Favourite colour is teal", "observed_at": "2025-06-01T09:00:00Z"},
    )
    assert status == 201
    status, lyon = call(server, secret, "POST", "/v1/memories", {"content": "Lives in Lyon"})
    assert status == 201
    sign_in(driver, server, secret)
    wait_for(lambda: len(css(driver, "#memory-list li")) == 2, what="two memories listed")

    # Each memory says when it was saved; one told as having happened earlier says so too.
    teal_item = f'#memory-list li[data-id="{teal["id"]}"]'
    lyon_item = f'#memory-list li[data-id="{lyon["id"]}"]'
    times = [t.get_attribute("datetime") for t in css(driver, f"{teal_item} .dates time")]
    assert times == [teal["created_at"], teal["observed_at"]]
    assert text_of(driver, f"{teal_item} .dates").startswith("Saved ")
    times = [t.get_attribute("datetime") for t in css(driver, f"{lyon_item} .dates time")]
    assert times == [lyon["created_at"]]  # observed when saved: one date is enough
    assert text_of(driver, f"{lyon_item} .version") == ""  # never edited: nothing to say

    # Add a memory by hand.
    css(driver, "#add-memory summary")[0].click()
    wait_for(lambda: visible(driver, "#new-memory"), what="the add-memory form")
    css(driver, "#new-memory")[0].send_keys("Allergic to peanuts")
    css(driver, "#new-memory-context")[0].send_keys("told the doctor")
    css(driver, "#add-memory-form button[type=submit]")[0].click()
    wait_for(lambda: "Memory saved." in text_of(driver, "#notice"), what="the saved notice")
    listing = call(server, secret, "GET", "/v1/memories")[1]["items"]
    [added] = [m for m in listing if m["content"] == "Allergic to peanuts"]
    assert added["context"] == "told the doctor"
    added_item = f'#memory-list li[data-id="{added["id"]}"]'
    assert text_of(driver, f"{added_item} .context") == "told the doctor"
    assert (
        css(driver, f"{added_item} .dates time")[0].get_attribute("datetime")
        == (added["created_at"])
    )
    assert css(driver, "#new-memory")[0].get_attribute("value") == ""
    assert text_of(driver, "#memory-count") == "(3)"
    screenshot(driver, "5-added-by-hand")

    # Search: the hits the API finds, in its order, each with its relevance in percent.
    query = "what colour do I like"
    css(driver, "#search-query")[0].send_keys(query)
    css(driver, "#search-form button[type=submit]")[0].click()
    wait_for(lambda: visible(driver, "#search-status"), what="the search results")
    status, found = call(
        server,
        secret,
        "GET",
        "/v1/memories/search?" + urllib.parse.urlencode({"q": query, "limit": 20}),
    )
    assert status == 200 and found["items"]
    shown = [li.get_attribute("data-id") for li in css(driver, "#memory-list li")]
    assert shown == [hit["memory"]["id"] for hit in found["items"]]
    for hit in found["items"]:
        item = f'#memory-list li[data-id="{hit["memory"]["id"]}"]'
        assert text_of(driver, f"{item} .score") == percent(hit["score"])
        kind = hit.get("kind") or hit["memory"].get("kind")
        assert text_of(driver, f"{item} .kind") == (kind or "")
    assert shown[0] == teal["id"]  # the colour memory is the best match
    count = len(found["items"])
    assert text_of(driver, "#search-summary") == (
        f"{count} memor{'y matches' if count == 1 else 'ies match'} “{query}”."
    )
    screenshot(driver, "6-search")

    # Found it: edit it right in the results.
    css(driver, f"{teal_item} button.edit")[0].click()
    field = wait_for(lambda: css(driver, f"{teal_item} form.editor textarea"), what="editor")[0]
    field.clear()
    field.send_keys("Favourite colour is sea green")
    css(driver, f"{teal_item} form.editor button[type=submit]")[0].click()
    wait_for(lambda: not css(driver, f"{teal_item} form.editor"), what="the editor to close")
    assert text_of(driver, f"{teal_item} .content") == "Favourite colour is sea green"
    assert text_of(driver, f"{teal_item} .score") == percent(found["items"][0]["score"])
    stored = call(server, secret, "GET", f"/v1/memories/{teal['id']}")[1]
    assert stored["content"] == "Favourite colour is sea green" and stored["version"] == 2

    # Back to every memory, the edit included.
    css(driver, "#search-clear")[0].click()
    wait_for(lambda: not visible(driver, "#search-status"), what="the search to close")
    assert len(css(driver, "#memory-list li")) == 3
    assert not css(driver, "#memory-list .match:not([hidden])")
    assert text_of(driver, f"{teal_item} .content") == "Favourite colour is sea green"
    assert text_of(driver, f"{teal_item} .version") == "edited 1×"
    assert script_errors(driver) == []


def send(driver, message: str) -> None:
    done = len(css(driver, "#messages li.assistant[data-state=done]"))
    css(driver, "#message")[0].send_keys(message)
    css(driver, "#send")[0].click()
    wait_for(
        lambda: len(css(driver, "#messages li.assistant[data-state=done]")) == done + 1,
        timeout=20,
        what=f"the answer to {message!r}",
    )


def conversation(driver) -> list[tuple[str, str]]:
    return [
        tuple(pair)
        for pair in driver.execute_script(
            "return [...document.querySelectorAll('#messages li')].map((li) => "
            "[li.classList.contains('user') ? 'user' : 'assistant', "
            "li.querySelector('.text').textContent])"
        )
    ]


def thread_rows(driver) -> list[dict]:
    """The conversation list as shown, read in one go (a refresh re-renders it)."""
    return driver.execute_script(
        """return [...document.querySelectorAll('#thread-list li')].map((li) => ({
             id: li.dataset.id,
             title: li.querySelector('.title').textContent,
             meta: li.querySelector('.meta').textContent,
             time: li.querySelector('time').getAttribute('datetime'),
             current: li.querySelector('button').getAttribute('aria-current') === 'true',
           }))"""
    )


def test_conversations_reopen_and_usage_shows_their_cost(server, llm, keys, browser):
    driver = browser
    _, secret = new_key(keys)
    llm.reset()
    llm.script(
        "anthropic",
        Reply(text="Hello, gardener."),
        Reply(text="Chess it is."),
        Reply(text="Tomatoes need sun."),
    )
    sign_in(driver, server, secret)
    assert visible(driver, "#threads-empty")
    send(driver, "I like gardening")
    wait_for(lambda: len(css(driver, "#thread-list li")) == 1, what="the first conversation")
    css(driver, "#new-chat")[0].click()
    assert css(driver, "#messages li") == []
    send(driver, "I also play chess")
    wait_for(lambda: len(css(driver, "#thread-list li")) == 2, what="two conversations")

    # The list is the API's, newest first, the open one marked.
    threads = call(server, secret, "GET", "/v1/threads")[1]["items"]
    assert [t["title"] for t in threads] == ["I also play chess", "I like gardening"]
    rows = wait_for(
        lambda: (rows := thread_rows(driver)) and rows[0]["time"] == threads[0]["updated_at"]
        and rows,
        what="the list to show the latest activity",
    )  # fmt: skip
    assert [r["id"] for r in rows] == [t["thread_id"] for t in threads]
    assert [r["title"] for r in rows] == ["I also play chess", "I like gardening"]
    assert [r["current"] for r in rows] == [True, False]
    assert rows[0]["meta"].startswith("Last active ")

    # Reopen the first conversation: its messages come back, and the chat goes on in it.
    gardening = threads[1]["thread_id"]
    css(driver, f'#thread-list li[data-id="{gardening}"] button')[0].click()
    wait_for(
        lambda: (
            conversation(driver)
            == [("user", "I like gardening"), ("assistant", "Hello, gardener.")]
        ),
        what="the reopened conversation",
    )
    assert (
        css(driver, f'#thread-list li[data-id="{gardening}"] button')[0].get_attribute(
            "aria-current"
        )
        == "true"
    )
    send(driver, "What grows well?")
    assert conversation(driver)[-1] == ("assistant", "Tomatoes need sun.")
    status, reopened = call(server, secret, "GET", f"/v1/threads/{gardening}")
    said = [(m["role"], m["content"]) for m in reopened["messages"] if m["content"]]
    assert said[-2:] == [("user", "What grows well?"), ("assistant", "Tomatoes need sun.")]
    assert len(call(server, secret, "GET", "/v1/threads")[1]["items"]) == 2  # no new one
    wait_for(
        lambda: [r["id"] for r in thread_rows(driver)] == [gardening, threads[0]["thread_id"]],
        what="the reopened conversation to move to the top",
    )
    screenshot(driver, "7-reopened-conversation")

    # Usage and cost: what the API reports for this user, readable.
    css(driver, "#usage")[0].click()
    wait_for(
        lambda: driver.execute_script("return document.getElementById('usage-dialog').open"),
        what="the dialog",
    )
    wait_for(lambda: css(driver, "#usage-rows tr"), what="usage rows")
    usage = call(server, secret, "GET", "/v1/usage?days=30")[1]
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#usage-rows tr')]"
        ".map((tr) => [...tr.cells].map((td) => td.textContent))"
    )
    assert [(r[0], r[1], int(r[2].replace(",", ""))) for r in rows] == [
        (item["day"], item["model"], item["calls"]) for item in usage["items"]
    ]
    chat_rows = [item for item in usage["items"] if item["model"].startswith("claude")]
    assert sum(item["calls"] for item in chat_rows) == 3  # one model call per answer
    assert usage["total_cost_usd"] > 0
    total = text_of(driver, "#usage-total")
    assert total.endswith("spent in the last 30 days.")
    assert math.isclose(float(total.split()[0].lstrip("$")), usage["total_cost_usd"], abs_tol=1e-5)
    screenshot(driver, "8-usage")
    Select(css(driver, "#usage-days")[0]).select_by_value("7")
    wait_for(lambda: "last 7 days" in text_of(driver, "#usage-total"), what="the 7-day total")
    css(driver, "#usage-dialog .dialog-head button")[0].click()
    wait_for(
        lambda: not driver.execute_script("return document.getElementById('usage-dialog').open"),
        what="closing",
    )
    assert script_errors(driver) == []
