"""The dashboard at /ui in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright), and
the IDL's documentation at /idl, against a real stack whose tasks run at the demo pace.

Screenshots go to a temporary folder; to refresh the ones in docs/, run
`SCREENSHOT_DIR=docs .venv/bin/python -m pytest tests/e2e/test_ui.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from RPC import RPCcelery
from testing.stack import REPO, Stack
from testing.waiting import wait_for
from tests.e2e.backends import BACKENDS, stack_on_backend
from tests.e2e.test_routes import rounded_pi

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_SECONDS = 3.0
# Every wait below is for a condition; these only bound how long a broken page may take to fail.
STEP_MS = 10_000

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack of its own whose tasks take at least DEMO_SECONDS, so bars visibly move; each backend in turn."""
    # d=10 and below run whole (at the demo pace); d=11 is split into ~22 chunks.
    with stack_on_backend(
        request,
        broker_url,
        redis_url,
        tmp_path_factory,
        "ui",
        DEMO_MIN_SECONDS=str(DEMO_SECONDS),
        MAX_DECIMAL="11",
        SPLIT_MIN_TERMS=str(10**11),
        SPLIT_CHUNK_TERMS=str(10**10),
    ) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (bash .ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_errors() -> list[str]:
    """What the page reported as errors (uncaught exceptions, console errors); none is expected."""
    return []


@pytest.fixture
def page(browser: Browser, demo: Stack, page_errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.set_default_timeout(STEP_MS)
    errors = page_errors
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield p
    finally:
        context.close()
    assert errors == [], f"the page reported errors: {errors}"


def open_dashboard(page: Page, demo: Stack) -> None:
    page.goto(f"{demo.api}/ui")
    page.wait_for_selector("#conn[data-state='live']")


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f"tr[data-id='{task_id}']")


def test_start_a_task_from_the_form_and_watch_it_reach_the_digits(page: Page, demo: Stack) -> None:
    open_dashboard(page, demo)
    page.fill("#decimal", "5")
    with page.expect_response(lambda r: "/calcpi/" in r.url and r.request.method == "POST") as answer:
        page.click("#start-button")
    assert answer.value.status == 202
    task_id = answer.value.json()["id"]
    bar = row(page, task_id).locator("[data-field=progress]")
    bar.wait_for()
    # Record every value the bar shows, from inside the page, until the task ends.
    page.evaluate(
        """(id) => {
        const bar = document.querySelector(`tr[data-id='${id}'] [data-field=progress]`);
        window.seen = [Number(bar.getAttribute('aria-valuenow'))];
        new MutationObserver(() => window.seen.push(Number(bar.getAttribute('aria-valuenow'))))
            .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
    }""",
        task_id,
    )
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-id='${id}']`).dataset.status === 'SUCCESS'",
        arg=task_id,
        timeout=DEMO_SECONDS * 1000 + STEP_MS,
    )
    seen = page.evaluate("window.seen")
    assert seen == sorted(seen), f"the bar went back: {seen}"
    assert len({p for p in seen if 0 < p < 100}) >= 3, f"the bar did not visibly advance: {seen}"
    assert seen[-1] == 100
    cells = row(page, task_id)
    assert cells.locator("[data-field=value]").inner_text() == rounded_pi(5) == "3.14159"
    assert cells.locator("button.cancel").count() == 0
    assert cells.locator(".cell-finished").inner_text() != "—"
    assert re.fullmatch(r"\d+\.\d s", cells.locator("[data-field=elapsed]").inner_text())


def test_cancel_from_the_dashboard_then_reload_shows_the_same_state(page: Page, demo: Stack) -> None:
    done = httpx.post(f"{demo.api}/calcpi/2", timeout=10).json()["id"]
    victim = httpx.post(f"{demo.api}/calcpi/10", timeout=10).json()["id"]  # far longer than this test
    open_dashboard(page, demo)
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-id='${id}']`)?.dataset.status === 'PROGRESS'", arg=victim
    )
    clicked = time.monotonic()
    row(page, victim).locator("button.cancel").click()
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-id='${id}']`).dataset.status === 'REVOKED'", arg=victim
    )
    print(f"\nREVOKED shown {(time.monotonic() - clicked) * 1000:.0f} ms after the click on Cancel")
    assert row(page, victim).locator("button.cancel").count() == 0
    assert httpx.get(f"{demo.api}/task/{victim}", timeout=5).json()["status"] == "REVOKED"
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-id='${id}']`)?.dataset.status === 'SUCCESS'",
        arg=done,
        timeout=DEMO_SECONDS * 1000 + STEP_MS,
    )
    before = {task_id: texts(page, task_id) for task_id in (done, victim)}

    page.reload()
    page.wait_for_selector("#conn[data-state='live']")
    row(page, victim).wait_for()
    after = {task_id: texts(page, task_id) for task_id in (done, victim)}
    assert after == before
    assert after[done]["value"] == "3.14" and after[victim]["status"] == "REVOKED"


def texts(page: Page, task_id: str) -> dict[str, str]:
    cells = row(page, task_id)
    return {
        "status": cells.locator("[data-field=status]").inner_text(),
        "progress": cells.locator("[data-field=progress]").get_attribute("aria-valuenow") or "",
        "value": cells.locator("[data-field=value]").inner_text(),
        "finished": cells.locator(".cell-finished").inner_text(),
    }


def test_a_split_task_is_one_bar_in_segments(page: Page, demo: Stack) -> None:
    task_id = httpx.post(f"{demo.api}/calcpi/11", timeout=10).json()["id"]
    open_dashboard(page, demo)
    cells = row(page, task_id)
    cells.locator(".track.segmented").wait_for()
    total = httpx.get(f"{demo.api}/task/{task_id}", timeout=10).json()["chunks_total"]
    assert 10 < total < 40, total  # ~2.2e11 terms in chunks of 1e10
    page.wait_for_function(
        "([id, total]) => new RegExp(`^[1-9]\\d*/${total} chunks · 1 host$`)"
        ".test(document.querySelector(`tr[data-id='${id}'] .chunks`).textContent)",
        arg=[task_id, total],
        timeout=STEP_MS * 3,
    )
    segment = cells.locator(".track.segmented").evaluate("t => getComputedStyle(t).getPropertyValue('--segment')")
    assert float(segment.strip().rstrip("%")) == pytest.approx(100 / total)
    assert httpx.delete(f"{demo.api}/task/{task_id}", timeout=10).json()["status"] == "REVOKED"


def test_the_page_reconnects_when_the_gateway_restarts(page: Page, demo: Stack, page_errors: list[str]) -> None:
    task_id = httpx.post(f"{demo.api}/calcpi/1", timeout=10).json()["id"]
    open_dashboard(page, demo)
    row(page, task_id).wait_for()
    stopping = time.monotonic()
    demo.stop_gateway()
    stopped = time.monotonic() - stopping
    page.wait_for_selector("#conn[data-state='reconnecting']")
    assert page.locator("#conn").inner_text().strip() == "reconnecting…"
    demo.start_gateway()
    restarted = time.monotonic()
    page.wait_for_selector("#conn[data-state='live']")
    print(
        f"\ngateway stopped in {stopped * 1000:.0f} ms with a stream open; the page was live again "
        f"{(time.monotonic() - restarted) * 1000:.0f} ms after the new gateway answered"
    )
    assert stopped < 3, "an open event stream held up the gateway's shutdown"
    page.wait_for_function(
        "(id) => document.querySelector(`tr[data-id='${id}']`)?.dataset.status === 'SUCCESS'",
        arg=task_id,
        timeout=DEMO_SECONDS * 1000 + STEP_MS,
    )
    assert row(page, task_id).locator("[data-field=value]").inner_text() == "3.1"
    # The browser logs each refused reconnect while the gateway is down; nothing else is expected.
    page_errors[:] = [e for e in page_errors if "ERR_CONNECTION_REFUSED" not in e]


def test_the_page_loads_only_from_the_gateway_and_fits_a_narrow_screen(
    browser: Browser, demo: Stack, tmp_path: Path
) -> None:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    for _ in range(3):  # something running and something finished, to show both
        httpx.post(f"{demo.api}/calcpi/8", timeout=10)
    for decimal in (3, 6):
        httpx.post(f"{demo.api}/calcpi/{decimal}", timeout=10)
    context = browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        response = page.goto(f"{demo.api}/ui")
        assert response is not None and "default-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector("#conn[data-state='live']")
        page.wait_for_selector("#task-rows tr[data-status='PROGRESS']")
        # A few host samples, so the CPU chart has a line to show (one a second).
        page.wait_for_function(
            "() => document.querySelector('#cpu-history .line').getAttribute('d').split('L').length >= 4"
        )
        for width, height, name in ((1360, 900, "dashboard.png"), (390, 844, "dashboard-narrow.png")):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_function(f"() => window.innerWidth === {width}")
            # Nothing wider than the screen: on a phone the table turns into cards.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen"
            # The narrow one down to the first task cards; the wide one whole.
            clip = None if width > 1000 else {"x": 0, "y": 0, "width": width, "height": 1500}
            page.screenshot(path=str(folder / name), full_page=True, clip=clip)
    finally:
        context.close()
    assert requested and all(url.startswith((demo.api, "data:")) for url in requested), requested


# ---- the contract's documentation ---------------------------------------------------------------


def test_idl_page_is_served_and_names_every_service_method(demo: Stack) -> None:
    r = httpx.get(f"{demo.api}/idl", timeout=5, follow_redirects=True)
    assert r.status_code == 200 and r.url.path == "/idl/rpcinterface.html"
    methods = [name for name in vars(RPCcelery.Iface) if not name.startswith("_")]
    assert len(methods) == 7
    for name in methods:
        assert f'id="Fn_RPCcelery_{name}"' in r.text, name
    assert httpx.get(f"{demo.api}/idl/style.css", timeout=5).status_code == 200
    for bad in ("../README.md", "nope.html", "%2E%2E%2Fpyproject.toml"):
        assert httpx.get(f"{demo.api}/idl/{bad}", timeout=5).status_code == 404


def test_idl_docs_are_generated_from_the_current_idl(tmp_path: Path) -> None:
    thrift = shutil.which("thrift")
    if thrift is None:
        pytest.fail("the thrift compiler is missing: apt-get install thrift-compiler (bash .ci/run does)")
    subprocess.run([thrift, "--gen", "html", "-out", str(tmp_path), str(REPO / "rpcinterface.thrift")], check=True)
    committed = REPO / "app" / "static" / "idl"
    for path in tmp_path.iterdir():
        stale = f"app/static/idl/{path.name} is stale: run make docs"
        assert (committed / path.name).read_bytes() == path.read_bytes(), stale


def test_dashboard_is_linked_from_the_api_docs(demo: Stack) -> None:
    spec = httpx.get(f"{demo.api}/openapi.json", timeout=5).json()
    assert "](/ui)" in spec["info"]["description"] and "](/idl)" in spec["info"]["description"]
    assert wait_for(lambda: httpx.get(f"{demo.api}/ui/static/app.js", timeout=5).status_code == 200, 5, "app.js")
