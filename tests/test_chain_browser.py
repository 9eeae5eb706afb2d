"""Issue 32's night, end to end: three chains of four 5 s links run into three 20 s
films; a failed link stops only its chain; ``rerun --failed`` finishes it; the page
shows each chain as a line of links and its film plays in a real Chromium. The sheet
starts each chain on a line of its own. Skipped without Chromium (``make browser``)."""

from __future__ import annotations

import pytest

from runner.cli.commands import main
from runner.ledger.transitions import RunState
from runner.reports.sheet import plan_pages
from tests.conftest import FAST
from tests.test_chain_runs import chain_sim, rows, street  # noqa: F401  (a fixture)
from tests.test_report_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="no chromium + chromedriver (make browser)"
)

NIGHT = """\
defaults: {sound: false, stitch: true}
rows:
  - {id: sea, image: street.png, chain: [waves roll, a boat passes, gulls land, the sun sets]}
  - {id: city, image: street.png, chain: [cars pass, a bus stops, she slips, rain starts]}
  - {id: park, image: street.png, chain: [a dog runs, it jumps, it swims, it shakes]}
"""


def test_three_chains_into_three_films_that_play_from_the_page(
    chain_sim,  # noqa: F811
    browser,  # noqa: F811
    tmp_path,
    capsys,
):
    from selenium.webdriver.common.by import By

    street(tmp_path / "street.png")
    (tmp_path / "night.yaml").write_text(NIGHT, encoding="utf-8")
    run_dir = tmp_path / "run"
    chain_sim.config.prompt_fates["slips"] = "fail"
    assert main(["run", str(tmp_path / "night.yaml"), "--out", str(run_dir), *FAST]) == 1
    out = capsys.readouterr().out
    assert "film films/sea.mp4: 4 clip(s), 20.0 s" in out
    assert "film films/park.mp4: 4 clip(s), 20.0 s" in out
    assert "chain city: no film yet: city/3 (failed), city/4 (pending)" in out
    assert chain_sim.stats.tasks_created == 11  # city/4 never sent

    chain_sim.config.prompt_fates.clear()
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0
    assert "film films/city.mp4: 4 clip(s), 20.0 s" in capsys.readouterr().out
    assert chain_sim.stats.created_by_prompt["she slips"] == 2
    assert chain_sim.stats.tasks_created == 13  # each link once, the failed one twice

    browser.get((run_dir / "report.html").as_uri())
    chains = browser.find_elements(By.CSS_SELECTOR, "#chains .chain")
    assert [c.get_attribute("data-chain") for c in chains] == ["sea", "city", "park"]
    for chain in chains:
        assert len(chain.find_elements(By.CSS_SELECTOR, "ol.links li")) == 4
    browser.set_script_timeout(20)
    durations = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const films = Array.from(document.querySelectorAll("video.film"));
        Promise.all(films.map(v => v.readyState >= 1 ? v.duration : new Promise(ok => {
            v.addEventListener("loadedmetadata", () => ok(v.duration));
            v.addEventListener("error", () => ok(-1));
            v.load();
        }))).then(done);
        """
    )
    assert len(durations) == 3 and all(abs(d - 20.0) <= 3 / 8 for d in durations), durations

    state = RunState.open(run_dir, read_only=True)
    try:
        lines = plan_pages(state.tasks(), run_dir, "t")[0].lines
    finally:
        state.close()
    starts = [[tile.task_key for tile in line if tile] for line in lines]
    assert starts == [
        ["sea/1", "sea/2", "sea/3"],
        ["sea/4"],
        ["city/1", "city/2", "city/3"],
        ["city/4"],
        ["park/1", "park/2", "park/3"],
        ["park/4"],
    ]
