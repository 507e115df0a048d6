"""The web page of `vstream serve` in a real browser: Playwright driving Debian's Chromium against a real server.

The server runs the tiny random checkpoint; Chromium's fake camera stands in for a webcam. Every test fails on a
console error or an uncaught exception in the page.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from serve_server import RemoteServer

from conftest import encode_video

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium (apt install chromium)", allow_module_level=True)

expect = sync_api.expect
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
LATENCY = re.compile(r"^about t = [\d.]+ s · first token \d+ ms · total \d+ ms$")
FRAMES_SHOWN = "Number(document.querySelector('#session-status').dataset.frames) > 0"
WAIT_MS = 60_000  # generous: two CPU cores run the server, its model and the browser


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    """One `vstream serve` for the module, with a 10 s clip under its media root."""
    media = tmp_path_factory.mktemp("media")
    encode_video(media / "clip.mp4", frames=40, fps=4, size=(128, 96))
    args = ["--model", str(tiny_checkpoint), "--max-new-tokens", "8", "--media-root", str(media)]
    with RemoteServer(args) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """The page at `/`, in a fresh context allowed to use the (fake) camera; no errors allowed in it."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    context.grant_permissions(["camera"], origin=server.url())
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    tab.goto(server.url("/"))
    expect(tab.locator("#no-session")).to_be_visible()
    yield tab
    context.close()
    assert not errors, f"the page logged errors: {errors}\nserver log:\n{server.output()[-3000:]}"


def ask_and_wait(page, question: str) -> None:
    """Asks a question in the chat and waits for the streamed answer's latency line."""
    answers = page.locator("#chat .bubble.answer")
    before = answers.count()
    page.fill("#question", question)
    page.click("#ask")
    latency = answers.nth(before).locator(".latency")
    expect(latency).to_have_text(LATENCY, timeout=WAIT_MS)
    expect(answers.nth(before).locator(".error")).to_have_count(0)


def close_session(page) -> None:
    page.click("#close-session")
    expect(page.locator("#no-session")).to_be_visible()


def test_file_source_memory_and_chat(page, server, tmp_path):
    page.fill("#source", "clip.mp4")
    page.fill("#fps", "2")
    page.fill("#speed", "4")
    page.click("#open")
    page.wait_for_function(FRAMES_SHOWN, timeout=WAIT_MS)
    expect(page.locator("#newest-frame")).to_be_visible(timeout=WAIT_MS)
    ask_and_wait(page, "What is on the screen?")
    expect(page.locator("#timeline .temporal").first).to_be_attached(timeout=WAIT_MS)
    expect(page.locator("#keyframes img").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#keyframes figcaption").first).to_contain_text("t = ")
    expect(page.locator("#token-counts")).to_contain_text("temporal")
    page.screenshot(path=tmp_path / "page-file.png")
    close_session(page)


def test_camera_pushes_frames_and_answers(page, server, tmp_path):
    page.click("#camera")
    expect(page.locator("#camera-acks")).to_contain_text("sent", timeout=WAIT_MS)
    session_id = page.locator("#session-select").input_value()
    assert session_id
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        info = httpx.get(server.url(f"/v1/sessions/{session_id}"), timeout=10).json()
        if info["frames_in_memory"] > 0:
            break
        assert time.monotonic() < deadline, f"no pushed frame reached the memory: {info}"
        time.sleep(0.3)
    assert info["kind"] == "push"
    ask_and_wait(page, "What do you see?")
    expect(page.locator("#camera-video")).to_be_visible()
    page.wait_for_function(FRAMES_SHOWN, timeout=WAIT_MS)  # the page's own view of the session caught up
    expect(page.locator("#keyframes img").first).to_be_visible(timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "page-camera.png")
    page.click("#camera")  # stop it
    expect(page.locator("#camera")).to_have_text("Use camera")
    close_session(page)


def test_standing_question_is_listed(page, server):
    page.fill("#source", "synthetic:10")
    page.fill("#speed", "2")
    page.click("#open")
    expect(page.locator("#stream-view")).to_be_visible()
    page.fill("#watch-question", "Is there a red circle?")
    page.fill("#watch-match", "red")
    page.click("#watch")
    expect(page.locator("#watch-list li")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#watch-list li").first).to_contain_text("Is there a red circle?")
    # with `match`, the first check gives the watch a value: an alert comes over the event stream
    expect(page.locator("#alerts li.watch").first).to_contain_text("Is there a red circle? →", timeout=WAIT_MS)
    expect(page.locator("#watch-list .value.yes, #watch-list .value.no")).to_have_count(1, timeout=WAIT_MS)
    close_session(page)
