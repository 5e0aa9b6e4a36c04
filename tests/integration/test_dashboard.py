"""The dashboard in a real headless browser: Debian's chromium (installed through the stack's apt
helper when missing), driven by Playwright without any browser download. The page loads without
console errors and shows a stream this test creates, with its live publish rate; a screenshot is
kept in test-artifacts/ (and copied to docs/dashboard.png for the README)."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from cluster.settings import Settings
from cluster.stack import processes
from tests.conftest import Mint
from tests.integration.conftest import create_stream

pytestmark = pytest.mark.integration
TENANT = "dashboard"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DEADLINE_MS = 90_000


@pytest.fixture(scope="module")
def chromium() -> str:
    return processes.require_executable("chromium", "chromium", print)


@pytest.fixture
def publishing(http: httpx.Client, unique: str) -> Iterator[dict[str, str]]:
    """A stream with events flowing into it until the test ends."""
    name = f"orders-{unique}"
    stream = {**create_stream(http, TENANT, name, partitions=2), "stream_name": name}
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.wait(0.2):
            events = [
                {
                    "event_type": "order.created",
                    "source_capability": "dashboard-test",
                    "aggregate_id": f"o{n + i}",
                    "aggregate_type": "Order",
                    "payload": {"n": n + i},
                }
                for i in range(20)
            ]
            who = {"stream_id": stream["stream_id"], "tenant_id": TENANT, "user_id": "t"}
            http.post("/api/v1/events/batch", json={**who, "events": events})
            n += 20

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield stream
    stop.set()
    thread.join(timeout=30)


def test_dashboard_shows_the_stream_and_its_rate_without_console_errors(
    stack: Settings, mint: Mint, chromium: str, publishing: dict[str, str]
) -> None:
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{stack.api_url}/dashboard?access_token={mint(TENANT, 'viewer')}")
            row = page.locator(f"#stream-{publishing['stream_id']}")
            row.wait_for(timeout=DEADLINE_MS)
            assert "access_token" not in page.url  # the token left the address bar
            assert row.locator("td").nth(0).inner_text() == publishing["stream_name"]
            # A few seconds of chart for the screenshot (pushes come every second).
            page.wait_for_function(
                "Object.values(state.history).some(points => points.length >= 8)",
                timeout=DEADLINE_MS,
            )
            shown = page.wait_for_function(
                """id => {
                    const cell = document.querySelector(`#stream-${id} td:nth-child(5)`);
                    const rate = cell && parseFloat(cell.textContent.replace(/,/g, ""));
                    return rate > 0 ? cell.textContent : null;
                }""",
                arg=publishing["stream_id"],
                timeout=DEADLINE_MS,
            ).json_value()
            assert re.fullmatch(r"[\d,.]+", shown), shown  # the live rate, events/s
            assert page.locator("#connection").inner_text() == "live"
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(ARTIFACTS / "dashboard.png", docs / "dashboard.png")
