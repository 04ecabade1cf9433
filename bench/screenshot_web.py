"""The README's screenshot of the web page: the example export uploaded, ten picks shown.

Real parts: the web front end on 127.0.0.1 (a free port), the command layer, SQLite in a temporary
folder, the default bundle (exports/default); no list site is reached (the upload needs none).
Drives Debian's chromium through chromium-driver and selenium, headless.

    python bench/screenshot_web.py [--out docs/web.png] [--width 1200]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import load_engine, open_runtime  # noqa: E402
from bot.settings import BotSettings, StorageSection  # noqa: E402
from bot.web import WebFrontEnd, WebServer  # noqa: E402

EXAMPLE_EXPORT = ROOT / "examples" / "example-export.xml"


def shoot(url: str, out: Path, width: int) -> int:
    """Upload the example export at `url`, save the whole page to `out`; the number of cards."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise SystemExit(
            "needs chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},1000")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        driver.get(url)
        driver.find_element(By.ID, "export").send_keys(str(EXAMPLE_EXPORT))
        driver.find_element(By.CSS_SELECTOR, "button.primary").click()
        cards = len(driver.find_elements(By.CSS_SELECTOR, "li.card"))
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, int(height) + 40)
        driver.execute_script("window.scrollTo(0, 0)")  # the answer lands on #results
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        return cards
    finally:
        driver.quit()


async def main_async(out: Path, width: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = BotSettings(storage=StorageSection(path=str(Path(tmp) / "web.sqlite3")))
        engine = load_engine(settings.engine)
        async with open_runtime(settings, engine) as runtime:
            server = WebServer(WebFrontEnd(runtime.service, settings, b"s" * 32), "127.0.0.1", 0)
            await server.start()
            try:
                return await asyncio.to_thread(shoot, server.url, out, width)
            finally:
                await server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "web.png")
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args()
    cards = asyncio.run(main_async(args.out, args.width))
    print(f"{cards} cards; screenshot: {args.out}")
    return 0 if cards else 1


if __name__ == "__main__":
    sys.exit(main())
