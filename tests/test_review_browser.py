"""The review page in a real headless Chromium, as a person uses it in the morning:
judge with the keyboard, edit a prompt, reload and find it all kept, redo the rejected
from the page (the simulator's books: exactly the rejected paid once more, the edited
one with its new prompt), and a page from elsewhere refused. The screenshot taken here
is the README's (``test-artifacts/review.png``, copied to ``docs/``). Skipped without
Chromium (``make browser``)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.review.app import start_review
from tests.conftest import FAST, draw_image, wait_until
from tests.test_report_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="no chromium + chromedriver (make browser)"
)


@pytest.fixture
def night(tmp_path, threaded_sim) -> Path:
    draw_image(tmp_path / "a.png", 640, 360)
    draw_image(tmp_path / "b.jpg", 360, 640)
    manifest = tmp_path / "night.yaml"
    manifest.write_text(
        "defaults: {sound: false}\n"
        "rows:\n"
        "  - {id: cat, image: a.png, prompt: 'a cat turns its head'}\n"
        "  - {id: tower, image: b.jpg, prompt: 'a lighthouse at dusk', aspect_ratio: '9:16'}\n"
        "  - {id: boat, image: a.png, prompt: 'a boat drifts'}\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "night"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    return run_dir


@pytest.fixture
def review_url(night) -> Iterator[str]:
    """The review server on a thread of its own (the browser is driven from this one)."""
    started: dict[str, object] = {}
    ready, stop = threading.Event(), threading.Event()

    def serve() -> None:
        async def main_loop() -> None:
            server = await start_review(night)
            started["url"] = server.url
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await server.close()

        asyncio.run(main_loop())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20)
    yield str(started["url"])
    stop.set()
    thread.join(30)


def reviews(run_dir: Path) -> dict[str, tuple]:
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        rows = db.execute("SELECT task_key, verdict, note, edits FROM reviews").fetchall()
    return {r[0]: (r[1], r[2], json.loads(r[3]) if r[3] else None) for r in rows}


def test_judge_edit_reload_and_redo_from_the_page(browser, night, review_url, threaded_sim):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def card(key: str):
        return browser.find_element(By.CSS_SELECTOR, f'article.card[data-key="{key}"]')

    def cards_drawn() -> int:
        return len(browser.find_elements(By.CSS_SELECTOR, "article.card"))

    browser.get(review_url)
    wait_until(lambda: cards_drawn() == 3, what="the three cards")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("a")  # cat/1 is the current card: kept
    body.send_keys("j", "x")  # tower/1 rejected
    body.send_keys("j", "x")  # boat/1 rejected
    wait_until(lambda: len(reviews(night)) == 3, what="three judgements in the ledger")
    assert {k: v[0] for k, v in reviews(night).items()} == {
        "cat/1": "kept",
        "tower/1": "rejected",
        "boat/1": "rejected",
    }
    body.send_keys("n")
    browser.switch_to.active_element.send_keys("the boat sinks", Keys.ENTER)
    body.send_keys("e")  # edit boat/1: its prompt box has the focus
    prompt = browser.switch_to.active_element
    prompt.clear()
    prompt.send_keys("a boat drifts slowly, calm water")
    card("boat/1").find_element(By.CSS_SELECTOR, 'button[data-do="save"]').click()
    wait_until(lambda: reviews(night)["boat/1"][2] is not None, what="the edit kept")
    assert reviews(night)["boat/1"] == (
        "rejected",
        "the boat sinks",
        {"prompt": "a boat drifts slowly, calm water"},
    )

    browser.refresh()  # all of it is in the ledger, not in the page
    wait_until(lambda: cards_drawn() == 3, what="the cards again")
    verdict = lambda key: card(key).find_element(By.CSS_SELECTOR, ".verdict").text  # noqa: E731
    wait_until(lambda: verdict("cat/1") == "kept", what="kept shown after a reload")
    assert verdict("tower/1") == verdict("boat/1") == "rejected"
    assert card("boat/1").find_element(By.CSS_SELECTOR, ".note").get_attribute("value") == (
        "the boat sinks"
    )
    redo = browser.find_element(By.ID, "redo-open")
    wait_until(lambda: redo.text.startswith("redo 2 rejected"), what="the redo's price")
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "review.png"))

    redo.click()
    confirm = browser.find_element(By.ID, "confirm-text").text
    assert "2 task(s), 1 with edits" in confirm and "boat/1" in confirm
    browser.find_element(By.ID, "confirm-yes").click()
    wait_until(
        lambda: "redo finished" in browser.find_element(By.ID, "said").text,
        timeout_s=40,
        what="the redo's end, said on the page",
    )
    assert threaded_sim.stats.created_by_prompt == {
        "a cat turns its head": 1,
        "a lighthouse at dusk": 2,
        "a boat drifts": 1,
        "a boat drifts slowly, calm water": 1,
    }
    wait_until(lambda: redo.text == "nothing rejected", what="the new takes unjudged")
    for key in ("tower/1", "boat/1"):  # the new attempts arrived on the page, unjudged
        wait_until(
            lambda key=key: (
                "attempt 2" in card(key).find_element(By.CSS_SELECTOR, ".settings").text
            ),
            what=f"{key}'s second attempt shown",
        )
        assert not card(key).find_element(By.CSS_SELECTOR, ".verdict").is_displayed()
    assert "calm water" in card("boat/1").find_element(By.CSS_SELECTOR, ".prompt").text


def test_a_page_from_elsewhere_cannot_judge_or_spend(browser, night, review_url):  # noqa: F811
    """Another page in the same browser (here a file on disk) knows the address but is
    refused: its JSON write needs a preflight nobody answers, a form-like write is
    refused by origin and type, and without the token nothing is there."""
    browser.get((night / "report.html").as_uri())
    browser.set_script_timeout(20)
    said = browser.execute_async_script(
        """
        const [url, done] = [arguments[0], arguments[arguments.length - 1]];
        const body = JSON.stringify({key: "cat/1", verdict: "rejected"});
        const tries = [
          fetch(url + "api/judge", {method: "POST", body,
                headers: {"Content-Type": "application/json"}}).then(r => r.status, e => "blocked"),
          fetch(url + "api/judge", {method: "POST", body, mode: "no-cors",
                headers: {"Content-Type": "text/plain"}}).then(r => r.type, e => "blocked"),
          fetch(url.split("/").slice(0, 3).join("/") + "/api/tasks")
            .then(r => r.status, e => "blocked"),
        ];
        Promise.all(tries).then(done);
        """,
        review_url,
    )
    # The JSON write and the read are stopped by the browser (no CORS answer); the
    # no-cors write reaches the server, which refuses it (origin, type) unreadably.
    assert said == ["blocked", "opaque", "blocked"]
    assert reviews(night) == {}  # and nothing was written
