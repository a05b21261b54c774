"""The results explorer in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which .ci/run installs) driven by selenium. Every page loads from file:// with no
console error and no request outside the folder; sorting, filtering and links work; the
leaderboard shows the Markdown pages' numbers. Skipped, in one line, where no browser is installed.

BENCH_SITE_DIR=path tests an already built site (`make site-screenshot`: the committed store's)
instead of the digits one built here; BENCH_SITE_SCREENSHOT=file.png saves the leaderboard's
screenshot there."""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import COMMITTED
from tests.test_site import markdown_linear

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("explorer"),  # the explorer tests/test_site.py builds, built once
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no browser: apt install chromium chromium-driver"),
]


@pytest.fixture(scope="session")
def built(request):
    if os.environ.get("BENCH_SITE_DIR"):
        return Path(os.environ["BENCH_SITE_DIR"]).resolve()
    return request.getfixturevalue("digits_site")[0]


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser, path: Path) -> list[str]:
    """Load `path`; the problems seen: console errors and requests outside file://."""
    browser.get_log("browser"), browser.get_log("performance")  # drop what came before
    browser.get(path.as_uri())
    problems = [f"console: {e['message']}" for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("file://", "data:", "about:")):
                problems.append(f"request outside the folder: {url}")
    return problems


def test_every_page_loads_with_no_console_error_and_no_request_outside_the_folder(built, browser):
    runs = sorted((built / "runs").glob("*.html"))
    pages = [p for p in sorted(built.rglob("*.html")) if p.parent.name != "runs"] + runs[
        :: max(1, len(runs) // 6)
    ]
    assert len(pages) > 3
    for page in pages:
        assert open_page(browser, page) == [], page.relative_to(built)
        assert browser.execute_script("return document.readyState") == "complete"


def column(browser, table: str, header: str) -> list[str]:
    return browser.execute_script(
        """const t = document.getElementById(arguments[0]);
        const i = [...t.tHead.rows[0].cells].findIndex(c => c.textContent.trim() === arguments[1]);
        return [...t.tBodies[0].rows].filter(r => !r.classList.contains('hidden'))
            .map(r => r.cells[i].textContent.trim());""",
        table,
        header,
    )


def number(text: str) -> float:
    return float(text.split()[0].replace(",", "")) if text and text[0].isdigit() else float("inf")


def test_sorting_a_column_reorders_the_rows(built, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, built / "index.html")
    head = browser.find_element(By.XPATH, "//table[@id='leaderboard']//th[normalize-space()='mean rank']")
    head.click()
    ranks = [number(v) for v in column(browser, "leaderboard", "mean rank") if v != "-"]
    assert len(ranks) > 3 and ranks == sorted(ranks)
    head.click()
    ranks = [number(v) for v in column(browser, "leaderboard", "mean rank") if v != "-"]
    assert ranks == sorted(ranks, reverse=True)
    open_page(browser, built / "digits.html")
    browser.find_element(By.XPATH, "//table[@id='main']//th[normalize-space()='linear %']").click()
    accs = [number(v) for v in column(browser, "main", "linear %")]
    assert accs == sorted(accs) and len(accs) > 10


def test_a_filter_hides_rows(built, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, built / "digits.html")
    everything = len(column(browser, "main", "learner"))
    Select(
        browser.find_element(By.CSS_SELECTOR, "select[data-table=main][data-attr=family]")
    ).select_by_value("autoencoders")
    families = browser.execute_script(
        "return [...document.querySelectorAll('#main tbody tr:not(.hidden)')].map(r => r.dataset.family)"
    )
    assert 0 < len(families) < everything and set(families) == {"autoencoders"}
    box = browser.find_element(By.CSS_SELECTOR, "input[data-table=main]")
    box.send_keys("vae")
    assert {v.split()[0] for v in column(browser, "main", "learner")} == {"vae"}


def test_clicking_a_learner_opens_its_run_page_and_its_images_load(built, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, built / "digits.html")
    link = browser.find_element(By.XPATH, "//table[@id='main']//tr[@data-family='autoencoders']//td[1]/a")
    link.click()
    assert "/runs/" in browser.current_url and browser.current_url.endswith(".html")
    images = browser.execute_script(
        "return [...document.images].map(i => [i.complete, i.naturalWidth, i.getAttribute('src')])"
    )
    assert images and all(done and width > 0 for done, width, _ in images), images
    assert "python -m bench verify" in browser.page_source


def test_the_leaderboard_shows_the_markdown_tables_numbers(built, browser):
    open_page(browser, built / "index.html")
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#leaderboard a.acc')]"
        ".map(a => [a.dataset.page, a.dataset.learner, +a.dataset.dim, a.textContent])"
    )
    pages = {page for page, *_ in cells}
    assert "digits" in pages
    for page in pages:
        expected = markdown_linear(COMMITTED / f"{page}.md")
        for p, learner, dim, text in cells:
            if p == page:
                assert expected[(learner, dim)] == text, (page, learner, dim)
    if os.environ.get("BENCH_SITE_SCREENSHOT"):
        browser.set_window_size(1400, 1000)
        browser.save_screenshot(os.environ["BENCH_SITE_SCREENSHOT"])
