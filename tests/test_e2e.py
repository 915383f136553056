"""The app in a real Chromium (Debian's /usr/bin/chromium) driven by Playwright."""

import json
import os
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def page(server_url):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server_url)
        yield page
        browser.close()


def save_screenshot(page, name: str) -> None:
    """Keep the picture for the README when MEMEUI_SCREENSHOT_DIR says where."""
    target = os.environ.get("MEMEUI_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name))


# Every text the newest bot message shows, in order: a streamed reply shows several.
WATCH_BOT_TEXT = """() => {
  window.botTexts = [];
  new MutationObserver(() => {
    const bots = document.querySelectorAll('#chatbot .bot');
    const text = bots.length ? bots[bots.length - 1].innerText.trim() : '';
    if (text && text !== window.botTexts[window.botTexts.length - 1]) window.botTexts.push(text);
  }).observe(document.querySelector('#chatbot'), {subtree: true, childList: true, characterData: true});
}"""


def test_chat_streams_a_reply_with_a_sticker_and_an_alternative_swaps_in(page, data_dir):
    page.get_by_role("tab", name="Chat").click()
    page.evaluate(WATCH_BOT_TEXT)
    box = page.locator("#chat-input textarea")
    box.fill("I just failed my exam")
    box.press("Enter")
    bot = page.locator("#chatbot .bot").last
    sticker = bot.locator("img").first
    sticker.wait_for(state="visible", timeout=180_000)
    assert sticker.evaluate("img => img.complete && img.naturalWidth > 0")
    assert "mood:" in page.locator("#chatbot").inner_text()
    texts = page.evaluate("window.botTexts")
    assert len(texts) >= 3, texts  # the words came in pieces before the sticker
    save_screenshot(page, "chat.png")

    before = sticker.get_attribute("src")
    options = page.locator("#chat-alternatives img")
    options.first.wait_for(state="visible", timeout=30_000)
    picked = options.first.get_attribute("src").rsplit("/", 1)[-1]  # the sticker's file name
    options.first.click()
    page.wait_for_function(
        "before => { const bots = document.querySelectorAll('#chatbot .bot');"
        " const img = bots[bots.length - 1].querySelector('img');"
        " return img && img.src !== before; }", arg=before, timeout=30_000)
    now = page.locator("#chatbot .bot").last.locator("img").first.get_attribute("src")
    assert now.endswith("/" + picked)
    feedback = data_dir / "feedback.jsonl"
    labels = [json.loads(line) for line in feedback.read_text().splitlines()]
    assert [label["verdict"] for label in labels[-2:]] == ["picked", "replaced"]
    assert labels[-1]["dialogue"][0] == "I just failed my exam"

    page.locator("#chatbot button[aria-label='Like']").last.click()
    deadline = time.monotonic() + 30
    while len(feedback.read_text().splitlines()) == len(labels) and time.monotonic() < deadline:
        time.sleep(0.2)
    liked = json.loads(feedback.read_text().splitlines()[-1])
    assert liked["verdict"] == "like" and liked["sticker"] == labels[-2]["sticker"]

    page.locator("#chatbot button[aria-label='Undo']").last.click()
    page.wait_for_function("() => !document.querySelector('#chatbot .bot')", timeout=30_000)
    assert box.input_value() == "I just failed my exam"  # the undone message, back to edit


def test_search_shows_a_gallery(page):
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-query textarea").fill("I am so happy today")
    page.locator("#search-button").click()
    images = page.locator("#search-gallery img")
    images.first.wait_for(state="visible", timeout=60_000)
    assert images.count() >= 5
    assert "joy" in page.locator("#search-gallery").inner_text()
    save_screenshot(page, "search.png")


def test_library_upload_adds_a_pack(page, tmp_path):
    from PIL import Image, ImageDraw

    sticker = tmp_path / "rocket launch.png"
    image = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(image).polygon([(48, 5), (80, 90), (16, 90)], fill=(200, 40, 40))
    image.save(sticker)
    page.get_by_role("tab", name="Library").click()
    page.locator("#library-files input[type=file]").set_input_files(str(sticker))
    page.locator("#library-name textarea, #library-name input").first.fill("e2e-pack")
    page.locator("#library-add").click()
    status = page.locator("#library-status")
    status.get_by_text("1 added").wait_for(timeout=120_000)
    assert "e2e-pack" in page.locator("#library-packs").inner_text()
    save_screenshot(page, "library.png")
    page.locator("#library-remove-choice input").click()
    page.get_by_role("option", name="e2e-pack").click()
    page.get_by_role("button", name="Remove pack").click()
    status.get_by_text("Removed").wait_for(timeout=60_000)
    assert "e2e-pack" not in page.locator("#library-packs").inner_text()


def test_emotion_tab_reads_a_pasted_conversation(page):
    page.get_by_role("tab", name="Emotion").click()
    page.get_by_text("Paste a transcript").click()
    page.locator("#emotion-transcript textarea").fill(
        "Mia: I got the scholarship!\nLeo: No way, that's fantastic!")
    page.locator("#emotion-load").click()
    page.locator("#emotion-table").get_by_text("I got the scholarship!").wait_for(timeout=30_000)
    page.locator("#emotion-said textarea, #emotion-said input").first.fill("Thank you so much!")
    page.locator("#emotion-add").click()
    page.locator("#emotion-table").get_by_text("Thank you so much!").wait_for(timeout=30_000)
    page.locator("#emotion-read").click()
    page.locator("#emotion-forecast").get_by_text("What").wait_for(timeout=60_000)
    forecast = page.locator("#emotion-forecast").inner_text()
    assert "Leo" in forecast  # the next speaker: the one before the last
    page.locator("#emotion-forecast canvas, #emotion-forecast svg").first.wait_for(timeout=30_000)
    save_screenshot(page, "emotion.png")
