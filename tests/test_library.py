"""The library surface (issue 30, item 4): validate and run a manifest, a DataFrame or a
list of dicts, and read a report, from a script and from inside a running event loop
(a notebook cell), with the README's notebook example run as it is written."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import kling_batch as kb
from runner.core.errors import ManifestError
from tests.conftest import draw_image

ROOT = Path(__file__).resolve().parent.parent
FAST = {"submit_rate": "100/s", "poll_rate": "100/s", "first_poll_s": 0.05}


@pytest.fixture
def rows(tmp_path: Path) -> pd.DataFrame:
    draw_image(tmp_path / "frame.png")
    return pd.DataFrame(
        [
            {"id": "a", "image": "frame.png", "prompt": "a cat turns", "duration": 5},
            {"id": "b", "image": "frame.png", "prompt": "a dog runs", "duration": None},
        ]
    )


async def test_a_notebook_cell_runs_a_dataframe_batch(rows, tmp_path, quick_rehearsal):
    """An event loop is running here, as in a Jupyter cell: run still works."""
    out = tmp_path / "out"
    result = kb.run(rows, out, simulate=True, base_dir=tmp_path, defaults={"sound": False}, **FAST)
    assert result.ok and result.exit_code == 0
    assert result.counts == {"succeeded": 2} and result.created == 2
    assert list(result.report["task_key"]) == ["a/1", "b/1"]
    assert all((out / path).is_file() for path in result.report["video_path"])
    again = kb.run(rows, out, simulate=True, base_dir=tmp_path, defaults={"sound": False}, **FAST)
    assert again.created == 0  # run again: nothing paid twice
    read = kb.read_report(out)
    assert read[["task_key", "status"]].equals(result.report[["task_key", "status"]])


async def test_run_async_awaits_the_same_batch(rows, tmp_path, quick_rehearsal):
    result = await kb.run_async(
        rows, tmp_path / "out", simulate=True, base_dir=tmp_path, defaults={"sound": False}, **FAST
    )
    assert result.counts == {"succeeded": 2}


def test_a_script_runs_a_list_of_dicts_whose_list_cell_expands(tmp_path, quick_rehearsal):
    draw_image(tmp_path / "frame.png")
    rows = [{"id": "x", "image": "frame.png", "prompt": ["one", "two"], "sound": False}]
    result = kb.run(rows, tmp_path / "out", simulate=True, base_dir=tmp_path, **FAST)
    assert sorted(result.report["task_key"]) == ["x/1", "x/2"] and result.ok


def test_problems_name_their_row_and_field_before_anything_is_sent(rows, tmp_path):
    rows.loc[1, "duration"] = 7
    plan = kb.validate(rows, base_dir=tmp_path)
    assert not plan.ok
    said = [str(p) for p in plan.problems]
    assert any("row 'b'" in p and "duration" in p and "must be one of 5, 10" in p for p in said)
    with pytest.raises(ManifestError, match="must be one of 5, 10"):
        kb.run(rows, tmp_path / "out", simulate=True, base_dir=tmp_path)
    assert not (tmp_path / "out").exists()


def test_an_unknown_option_is_a_type_error(rows, tmp_path):
    with pytest.raises(TypeError, match="unknown option"):
        kb.run(rows, tmp_path / "out", simulate=True, base_dir=tmp_path, budget=3)


async def test_the_readmes_notebook_example_runs_as_written(tmp_path, quick_rehearsal, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- notebook example.*?-->\n```python\n(.*?)```", text, re.S)
    assert block, "the README's notebook example is gone"
    code = block.group(1).replace("outputs/notebook-demo", str(tmp_path / "demo"))
    code = code.replace('base_dir="manifests"', f'base_dir="{ROOT / "manifests"}"')
    exec(compile(code, "README.md", "exec"), {})  # inside this test's running event loop
    out = capsys.readouterr().out
    assert "True 2 $0.70" in out and "True {'succeeded': 2}" in out
