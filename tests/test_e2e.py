"""The app in a real Chromium (Debian's /usr/bin/chromium) driven by Playwright."""

import os
import shutil
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


def test_chat_reply_shows_a_sticker_image(page):
    page.get_by_role("tab", name="Chat").click()
    box = page.locator("#chat-input textarea")
    box.fill("I just failed my exam")
    box.press("Enter")
    bot = page.locator("#chatbot .bot").last
    sticker = bot.locator("img").first
    sticker.wait_for(state="visible", timeout=180_000)
    assert sticker.evaluate("img => img.complete && img.naturalWidth > 0")
    assert "mood:" in page.locator("#chatbot").inner_text()
    save_screenshot(page, "chat.png")


def test_search_shows_a_gallery(page):
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-query textarea").fill("I am so happy today")
    page.locator("#search-button").click()
    images = page.locator("#search-gallery img")
    images.first.wait_for(state="visible", timeout=60_000)
    assert images.count() >= 5
    assert "joy" in page.locator("#search-gallery").inner_text()
    save_screenshot(page, "search.png")
