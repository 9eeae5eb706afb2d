"""The second sweep's bad input: each case was a silent change of price or meaning, a
traceback, or no answer at all. Each asserts the message, the exit code, and that
nothing was sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.core.api_identity import api_identity
from runner.manifest.files import load
from runner.manifest.plan import plan
from tests.conftest import FAST, SIM_KEY, draw_image, write_rows


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


# --- expansion and YAML that would run out of memory or time -----------------------


def test_an_expansion_past_max_tasks_is_counted_before_it_is_built(tmp_path, capsys):
    ten = "[" + ", ".join(f"p{i}" for i in range(10)) + "]"
    path = yaml_file(
        tmp_path,
        f"rows:\n  - {{id: x, image: a.png, prompt: {ten}, negative_prompt: {ten}, "
        f"cfg_scale: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], duration: [5, 10], "
        "repeat: 1000}\n",
    )
    code, said = validate(path, capsys)
    assert code == 2
    assert "expands to 2,000,000 tasks, more than the limit of 100,000" in said
    assert "raise --max-tasks" in said
    code, said = validate(path, capsys, "--max-tasks", "1000")
    assert code == 2 and "more than the limit of 1,000" in said


def test_a_large_estimate_is_warned_about_before_spending(tmp_path, capsys):
    path = yaml_file(
        tmp_path, "rows:\n  - {id: x, image: a.png, prompt: p, duration: 10, repeat: 1000}\n"
    )
    code, said = validate(path, capsys)
    assert code == 0
    assert "warning: this is a large batch: 1,000 task(s), about $1,400.00 (over $500)" in said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("rows: &a\n  - *a\n", "an alias refers to the value that holds it"),
        (
            "x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + "".join(
                f"x-{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
                for a, b in zip("abcdefg", "bcdefgh", strict=True)
            )
            + "rows:\n  - {id: x, image: a.png, prompt: *h}\n",
            "its aliases expand to more than 2,000,000 values",
        ),
    ],
)
def test_yaml_aliases_that_never_end_or_explode_are_refused_at_once(tmp_path, capsys, text, said):
    code, out = validate(yaml_file(tmp_path, text), capsys)
    assert code == 2
    assert said in out and "internal error" not in out


def test_yaml_merge_keys_take_shared_settings_and_the_row_wins(tmp_path, capsys, threaded_sim):
    path = yaml_file(
        tmp_path,
        """\
        x-base: &base {image: a.png, duration: 10, sound: false}
        rows:
          - {<<: *base, id: x, prompt: first}
          - &second {<<: *base, id: y, prompt: second, duration: 5}
          - {<<: *second, id: z}
        """,
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), *FAST, "--no-download"]) == 0
    capsys.readouterr()
    sent = {t.prompt: t.request for t in threaded_sim.tasks.values()}
    assert sent["first"]["duration"] == 10 and sent["first"]["sound"] is False
    assert sent["second"]["duration"] == 5
    assert threaded_sim.stats.tasks_created == 3
    bad = yaml_file(
        tmp_path, "base: &b {sound: false}\nrows:\n  - {<<: *b, image: a.png, prompt: p}\n"
    )
    code, said = validate(bad, capsys)
    assert code == 2 and "go under a key that starts with 'x-'" in said


# --- images that cannot be opened safely ---------------------------------------------


def test_images_that_would_hang_loop_or_explode_are_problems_naming_the_file(tmp_path, capsys):
    from PIL import Image

    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    Image.new("L", (12000, 12000)).save(tmp_path / "bomb.png", optimize=True)
    path = yaml_file(
        tmp_path,
        """\
        rows:
          - {id: f, image: fifo.png, prompt: p}
          - {id: l, image: loop1.png, prompt: p}
          - {id: b, image: bomb.png, prompt: p}
        """,
    )
    code, said = validate(path, capsys)
    assert code == 2
    assert "row 'f': image = " in said and "fifo.png': is not a regular file" in said
    assert "row 'l': image = 'loop1.png': is a symlink loop" in said
    assert "bomb.png': has 144,000,000 pixels" in said and "decompression bomb" in said
    assert "site-packages" not in said and "internal error" not in said


# --- globs, ids and file names -----------------------------------------------------


def test_globs_reach_into_folders_and_name_files_apart(tmp_path, capsys, threaded_sim):
    for name in (
        "shots/a/key.png",
        "shots/b/key.png",
        "pics/cat.png",
        "pics/cat.jpg",
        "pics/猫.png",
    ):
        draw_image(tmp_path / name)
    (tmp_path / os.fsdecode(b"pics/caf\xe9.png")).write_bytes((tmp_path / "a.png").read_bytes())
    path = yaml_file(
        tmp_path,
        """\
        defaults: {sound: false}
        rows:
          - {image: "shots/*/key.png", prompt: p}
          - {id: deep, image: "**/key.png", prompt: p}
          - {image: pics, prompt: p}
        """,
    )
    code, said = validate(path, capsys)
    assert code == 2
    assert "its name is not UTF-8 text: rename the file" in said and "caf\\\\xe9.png" in said
    (tmp_path / os.fsdecode(b"pics/caf\xe9.png")).unlink()
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), *FAST]) == 0
    names = sorted(p.name for p in (run_dir / "videos").glob("*.mp4"))
    assert names == [
        "a_key_1.mp4",
        "b_key_1.mp4",
        "cat.jpg_1.mp4",
        "cat.png_1.mp4",
        "deep-shots_a_key_1.mp4",
        "deep-shots_b_key_1.mp4",
        "猫_1.mp4",
    ]


def test_ids_that_differ_only_in_case_get_names_that_do_not_share_a_file(tmp_path):
    path = yaml_file(
        tmp_path,
        "rows:\n  - {id: Cat, image: a.png, prompt: p}\n  - {id: cat, image: a.png, prompt: p}\n",
    )
    result = plan(load(path))
    assert result.ok, [str(p) for p in result.problems]
    first, second = (task.video_name for task in result.tasks)
    assert first == "Cat_1.mp4" and second.startswith("cat_1-") and second.endswith(".mp4")
    assert first.casefold() != second.casefold()  # macOS and Windows disks ignore case


# --- the command line --------------------------------------------------------------


def test_set_keeps_a_ratio_as_text(tmp_path, capsys):
    path = yaml_file(tmp_path, "rows:\n  - {id: x, image: a.png, prompt: p}\n")
    code, said = validate(path, capsys, "--set", "aspect_ratio=9:16")
    assert code == 0, said


def test_a_csv_header_naming_a_field_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("image,prompt,prompt\na.png,first,second\n", encoding="utf-8")
    code, said = validate(path, capsys)
    assert code == 2 and "the header names prompt more than once" in said


def test_a_manifest_on_standard_input(tmp_path, threaded_sim):
    text = "defaults: {sound: false}\nrows:\n  - {id: x, image: a.png, prompt: p}\n"
    env = {**os.environ, "NOVITA_BASE_URL": threaded_sim.base_url, "NOVITA_API_KEY": SIM_KEY}
    for csv_text in (text, "image,prompt,sound\na.png,p,false\n"):
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", "-", *FAST],
            input=csv_text,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "outputs" / "stdin" / "report.csv").is_file()
    assert threaded_sim.stats.tasks_created == 2  # the CSV's row is "1", the YAML's "x"


def test_rerun_can_name_a_key_that_holds_a_comma(tmp_path, threaded_sim, capsys):
    path = yaml_file(
        tmp_path, "defaults: {sound: false}\nrows:\n  - {id: 'a,b', image: a.png, prompt: p}\n"
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), *FAST]) == 0
    assert main(["rerun", str(run_dir), "--key", "a,b/1", *FAST]) == 0
    assert threaded_sim.stats.tasks_created == 2


@pytest.mark.parametrize("where", ["root", "videos", "strangers"])
def test_an_out_folder_that_is_not_a_folder_of_its_own_is_refused(
    tmp_path, threaded_sim, capsys, where
):
    path = yaml_file(
        tmp_path, "defaults: {sound: false}\nrows:\n  - {id: x, image: a.png, prompt: p}\n"
    )
    first = tmp_path / "first"
    assert main(["run", str(path), "--out", str(first), *FAST]) == 0
    out = {"root": Path("/"), "videos": first / "videos" / "again", "strangers": tmp_path}[where]
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), *FAST]) == 2
    said = capsys.readouterr().err
    assert {
        "root": "is the root folder",
        "videos": "is inside the videos folder",
        "strangers": "holds other files",
    }[where] in said
    assert threaded_sim.stats.tasks_created == 1
    assert not (Path("/") / "run.lock").exists()


def test_the_sim_command_refuses_a_port_out_of_range(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["sim", "--port", "99999"])
    assert exited.value.code == 2
    assert "a port is 0 to 65535, not '99999'" in capsys.readouterr().err


def test_a_rehearsal_account_keeps_its_balance_across_runs(tmp_path, quick_rehearsal, capsys):
    path = yaml_file(
        tmp_path, "defaults: {sound: false}\nrows:\n  - {id: x, image: a.png, prompt: p}\n"
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--simulate", "--out", str(run_dir), *FAST]) == 0
    path.write_text(path.read_text() + "  - {id: y, image: a.png, prompt: q}\n")
    assert main(["run", str(path), "--simulate", "--out", str(run_dir), *FAST]) == 0
    capsys.readouterr()
    assert main(["status", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["measured_spend_usd"] == summary["spent_usd"] == 0.7
