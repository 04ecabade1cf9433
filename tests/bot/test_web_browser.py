"""The web page in a real headless browser: Debian's chromium and chromium-driver through selenium.

The server is the real one on 127.0.0.1 (a free port) over the default bundle; only the list
services are fakes. The test skips, saying why, where chromium or selenium is not installed
(`make test` installs them).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.app import Runtime
from bot.web import WebFrontEnd

EXAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "examples" / "example-export.xml"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.slow


@pytest.fixture
def driver() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "the browser test needs Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; `make test` does it)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="the browser test needs selenium (pip install -e .[dev])"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,1600")
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield chrome
    finally:
        chrome.quit()


def scenario(driver: Any, url: str, shots: Path) -> None:
    """What a user does, in the browser; blocking, so it runs off the server's event loop."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    def page_says(text: str) -> None:
        # A generous bound on a slow machine; it is a wait for the next page, not a speed check.
        WebDriverWait(driver, 120).until(lambda d: text in d.page_source)

    def titles() -> list[str]:
        return [h.text for h in driver.find_elements(By.CSS_SELECTOR, "li.card h3")]

    driver.get(url)
    assert "Get recommendations" in driver.page_source
    # Choose the file by its label, as a user of a screen reader would find it.
    label = driver.find_element(By.XPATH, "//label[starts-with(., 'Or upload')]")
    driver.find_element(By.ID, label.get_attribute("for")).send_keys(str(EXAMPLE_EXPORT))
    driver.find_element(By.CSS_SELECTOR, "button.primary").click()
    page_says("Recommendations for example_watcher")
    shown = titles()
    assert len(shown) == 10, driver.page_source[:2000]
    driver.save_screenshot(str(shots / "results.png"))

    card = driver.find_elements(By.CSS_SELECTOR, "li.card")[2]
    gone = card.find_element(By.CSS_SELECTOR, "h3").text
    # The keyboard works: Enter on the focused button presses it.
    card.find_element(By.CSS_SELECTOR, 'button[value="not_interested"]').send_keys(Keys.ENTER)
    page_says("Noted: you are not interested in")
    after = titles()
    assert gone not in after and len(after) == 9
    driver.save_screenshot(str(shots / "after.png"))

    driver.find_element(By.XPATH, "//form[@action='/more']/button").click()
    page_says("More recommendations")
    more = titles()
    assert more and gone not in more and not set(more) & set(shown)


async def test_upload_then_not_interested_in_a_real_browser(
    runtime: Runtime, driver: Any, tmp_path: Path
) -> None:
    front = WebFrontEnd(runtime.service, runtime.settings, b"b" * 32)
    async with TestServer(front.app(), host="127.0.0.1") as server:
        await asyncio.to_thread(scenario, driver, str(server.make_url("/")), tmp_path)
    assert (tmp_path / "results.png").stat().st_size > 10_000
    assert (tmp_path / "after.png").stat().st_size > 10_000
