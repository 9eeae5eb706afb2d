"""The second sweep's bad input: each case was a silent change of price or meaning, a
traceback, or no answer at all. Each asserts the message, the exit code, and that
nothing was sent."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.cli import main
from runner.folder import api_identity
from tests.conftest import FAST, draw_image, write_rows


@pytest.fixture(autouse=True)
def frame(tmp_path: Path) -> Path:
    return draw_image(tmp_path / "a.png", 640, 360)


def validate(path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["validate", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def yaml_file(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- a typo in defaults never changes the price ------------------------------------


@pytest.mark.parametrize("where", ["defaults", "--set"])
def test_a_default_no_model_takes_is_an_error_with_a_did_you_mean(tmp_path, capsys, where):
    defaults = "defaults: {sond: false}\n" if where == "defaults" else ""
    path = yaml_file(tmp_path, defaults + "rows:\n  - {id: a, image: a.png, prompt: hi}\n")
    extra = ["--set", "sond=false"] if where == "--set" else []
    code, said = validate(path, capsys, *extra)
    assert code == 2
    assert "sond: is a default (defaults: or --set) that no model of this manifest takes" in said
    assert "(did you mean 'sound'?)" in said
    assert "skipped for its tasks" not in said  # said once, as the error it is


def test_a_default_some_models_take_is_still_skipped_for_the_others(tmp_path, capsys):
    path = yaml_file(
        tmp_path,
        """\
        defaults: {sound: false, model: [kling-v2.6-pro-i2v, kling-v2.1-i2v]}
        rows:
          - {id: a, image: a.png, prompt: hi}
        """,
    )
    code, said = validate(path, capsys)
    assert code == 0
    assert "sound: a default that kling-v2.1-i2v does not take: skipped" in said


# --- numbers that are not numbers ---------------------------------------------------


@pytest.mark.parametrize("value", ["+-5", "²", "٥"])
@pytest.mark.parametrize("kind", ["yaml", "csv"])
def test_a_duration_that_only_looks_like_a_number_is_a_problem(tmp_path, capsys, value, kind):
    if kind == "yaml":
        path = yaml_file(
            tmp_path, f"rows:\n  - {{id: a, image: a.png, prompt: hi, duration: '{value}'}}\n"
        )
    else:
        path = tmp_path / "m.csv"
        path.write_text(f"id,image,prompt,duration\na,a.png,hi,{value}\n", encoding="utf-8")
    code, said = validate(path, capsys)
    assert code == 2
    assert "duration" in said and "must be a whole number" in said
    assert "internal error" not in said


def test_a_price_that_is_not_a_number_is_a_problem(tmp_path, capsys):
    path = yaml_file(
        tmp_path, "prices: {silent: .nan}\nrows:\n  - {id: a, image: a.png, prompt: hi}\n"
    )
    code, said = validate(path, capsys)
    assert code == 2
    assert "prices.silent" in said and "must be USD per second" in said


# --- v3.0 multi-shot segments --------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "duration", "said"),
    [
        ("[{prompt: a, duration: 2}, {prompt: b, duration: 2}]", "", "duration is 5s"),
        ("[{prompt: a, duration: 0}, {prompt: b, duration: 5}]", "", "at least 1 second"),
        ("[{prompt: a, duration: -2}, {prompt: b, duration: 7}]", "", "at least 1 second"),
        ("[{prompt: a, duration: 3}, {prompt: b, duration: 3}]", ", duration: 5", "add up to 6s"),
    ],
)
def test_multi_prompt_segments_must_fill_the_duration_sent(
    tmp_path, capsys, segments, duration, said
):
    path = yaml_file(
        tmp_path,
        "rows:\n  - {id: a, model: kling-v3.0-std-i2v, image: a.png, "
        f"multi_prompt: {segments}{duration}, prompt: x}}\n",
    )
    code, out = validate(path, capsys)
    assert code == 2, out
    assert said in out


def test_segments_that_fill_the_default_duration_pass(tmp_path, capsys):
    path = yaml_file(
        tmp_path,
        "rows:\n  - {id: a, model: kling-v3.0-std-i2v, image: a.png, prompt: x, "
        "multi_prompt: [{prompt: a, duration: 2}, {prompt: b, duration: 3}]}\n",
    )
    assert validate(path, capsys)[0] == 0


# --- one API, several spellings -------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "same"),
    [
        ("http://127.0.0.1:8765/", True),
        ("http://localhost:8765", True),
        ("HTTP://LOCALHOST:8765", True),
        ("http://[::1]:8765", True),
        ("http://127.0.0.1:8766", False),
        ("https://127.0.0.1:8765", False),
    ],
)
def test_base_urls_compare_normalised(spelling, same):
    assert (api_identity(spelling) == api_identity("http://127.0.0.1:8765")) is same
    assert api_identity("https://api.novita.ai:443/") == api_identity("https://API.novita.ai")


def test_resume_with_another_spelling_of_the_base_url_is_the_same_api(
    tmp_path, threaded_sim, monkeypatch, capsys
):
    manifest = write_rows(tmp_path / "m2.yaml", 2, image="a.png")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, "--no-download"]) == 0
    other = threaded_sim.base_url.upper().replace("127.0.0.1", "localhost") + "/"
    monkeypatch.setenv("NOVITA_BASE_URL", other)
    assert main(["resume", str(run_dir), *FAST, "--download"]) == 0
    assert "use --out" not in capsys.readouterr().err
    assert threaded_sim.stats.tasks_created == 2
