"""Chains in the manifest: ``after: ROW`` and ``chain: [prompts]``, checked, priced and
recorded (each link's parent and chain in the ledger and the report)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import plan
from tests.conftest import draw_image

CHAINS = """\
defaults: {sound: false}
rows:
  - id: walk
    image: a.png
    chain: [a woman walks, she turns the corner, she enters a cafe]
  - id: dog
    image: a.png
    prompt: a dog runs
  - id: dog-more
    after: dog
    prompt: the dog jumps into the lake
    duration: 10
  - id: solo
    image: a.png
    prompt: alone
"""


@pytest.fixture
def chains(tmp_path: Path) -> Path:
    draw_image(tmp_path / "a.png")
    path = tmp_path / "chains.yaml"
    path.write_text(CHAINS, encoding="utf-8")
    return path


def test_chains_are_linked_priced_and_shown(chains, capsys):
    planned = plan(load(chains))
    assert planned.ok, planned.problems
    links = {t.key: (t.parent, t.chain) for t in planned.tasks}
    assert links == {
        "walk/1": (None, "walk"),
        "walk/2": ("walk/1", "walk"),
        "walk/3": ("walk/2", "walk"),
        "dog/1": (None, "dog"),
        "dog-more/1": ("dog/1", "dog"),
        "solo/1": (None, None),
    }
    prompts = [t.request.get("prompt") for t in planned.tasks if t.chain == "walk"]
    assert prompts == ["a woman walks", "she turns the corner", "she enters a cafe"]
    images = {t.key: t.request.get("image") for t in planned.tasks}
    assert images["walk/2"] == "last-frame-of:walk/1" and images["dog-more/1"] == (
        "last-frame-of:dog/1"
    )
    assert Path(images["walk/1"]).name == "a.png"
    assert [(c.name, c.seconds, c.usd) for c in planned.chains] == [
        ("walk", 15, 1.05),
        ("dog", 15, 1.05),
    ]
    assert main(["validate", str(chains)]) == 0
    out = capsys.readouterr().out
    assert "chain walk: 3 links, 15 s, ~ $1.05: walk/1 -> walk/2 -> walk/3" in out
    assert "chain dog: 2 links, 15 s, ~ $1.05: dog/1 -> dog-more/1" in out


def test_a_links_fingerprint_stands_for_its_parent_and_its_own_settings(chains, tmp_path):
    first = {t.key: t.fingerprint for t in plan(load(chains)).tasks}
    chains.write_text(CHAINS.replace("she turns the corner", "she stops"), encoding="utf-8")
    second = {t.key: t.fingerprint for t in plan(load(chains)).tasks}
    assert [k for k in first if first[k] != second[k]] == ["walk/2"]


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        (
            "  - {id: x, image: a.png, prompt: p}\n"
            "  - {id: y, after: x, image: a.png, prompt: q}\n",
            "row 'y': image = 'a.png': a link's first frame is its parent's last frame",
        ),
        ("  - {id: z, after: nope, prompt: r}\n", "row 'z': after = 'nope': names no row above"),
        (
            "  - {id: x, image: a.png, prompt: p}\n  - {id: w, after: x, prompt: [s, t]}\n",
            "row 'w': after = 'x': a link is one task",
        ),
        (
            "  - {id: x, image: a.png, prompt: p}\n  - {id: a, after: x, prompt: s}\n"
            "  - {id: b, after: x, prompt: t}\n",
            "row 'b': after = 'x': x/1 is continued already (by a)",
        ),
        (
            "  - {id: v, image: a.png, prompt: also, chain: [a, b]}\n",
            "row 'v': chain = 'a': a chain row's prompts are its chain: give no prompt",
        ),
        (
            "  - {id: v, image: a.png, chain: [a, b], duration: [5, 10]}\n",
            "a chain row expands by its prompts only",
        ),
        (
            "  - {id: x, image: a.png, prompt: p}\n"
            "  - {id: y, after: x, prompt: q, aspect_ratio: auto}\n",
            "row 'y': aspect_ratio = 'auto': a link follows its parent's video",
        ),
    ],
)
def test_chains_written_wrong_are_refused_with_the_row_and_field(tmp_path, rows, said, capsys):
    draw_image(tmp_path / "a.png")
    path = tmp_path / "bad.yaml"
    path.write_text("rows:\n" + rows, encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    assert said in capsys.readouterr().err


def test_a_csv_manifest_chains_with_an_after_column(tmp_path, capsys):
    draw_image(tmp_path / "a.png")
    path = tmp_path / "chains.csv"
    path.write_text(
        textwrap.dedent(
            """\
            id,image,prompt,after,sound
            one,a.png,first,,false
            two,,second,one,false
            three,,third,two,false
            """
        ),
        encoding="utf-8",
    )
    planned = plan(load(path))
    assert planned.ok, planned.problems
    assert [(t.key, t.parent) for t in planned.tasks] == [
        ("one/1", None),
        ("two/1", "one/1"),
        ("three/1", "two/1"),
    ]
    assert [c.keys for c in planned.chains] == [("one/1", "two/1", "three/1")]


def test_the_ledger_and_the_report_keep_each_links_parent_and_chain(chains, tmp_path):
    state = RunState.open(tmp_path / "run")
    try:
        state.sync_plan(plan(load(chains)).tasks)
        records = {r.task_key: (r.parent, r.chain) for r in state.tasks()}
    finally:
        state.close()
    assert records["walk/3"] == ("walk/2", "walk") and records["solo/1"] == (None, None)
