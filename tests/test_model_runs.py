"""Models side by side, through the CLI against the simulator: one manifest drives
several models (each gets its own path, names and wire types, checked by the simulator
against that model's contract), text-to-video rows need no image, and the report and
status say which model made what."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import pytest

from jobs import MODELS as ALL_MODELS
from runner.cli.commands import main
from tests.conftest import FAST, draw_image

MODELS = ("kling-v2.6-pro-i2v", "kling-v2.1-i2v", "kling-v3.0-std-i2v", "kling-o1-i2v")


@pytest.fixture
def comparison(tmp_path: Path) -> Path:
    draw_image(tmp_path / "a.png", 640, 360)
    path = tmp_path / "compare.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            defaults: {{sound: false, cfg_scale: 0.4}}
            rows:
              - id: cat
                image: a.png
                prompt: the cat turns
                model: [{", ".join(MODELS)}]
              - id: city
                model: kling-v3.0-std-t2v
                prompt: a city at night
                duration: 12
            """
        ),
        encoding="utf-8",
    )
    return path


def test_validate_says_once_which_defaults_a_model_does_not_take(comparison, capsys):
    assert main(["validate", str(comparison)]) == 0
    captured = capsys.readouterr()
    assert "OK, 5 task(s) from 2 row(s)" in captured.out
    assert captured.err.count("sound: a default that kling-v2.1-i2v does not take") == 1
    assert "cfg_scale: a default that kling-o1-i2v does not take" in captured.err
    assert "on kling-v3.0-std-t2v" in captured.out  # the estimate says which model costs what


def test_a_comparison_runs_every_model_with_its_own_wire(comparison, threaded_sim, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["run", str(comparison), "--out", str(run_dir), *FAST]) == 0
    made = {task.model: task.request for task in threaded_sim.tasks.values()}
    assert set(made) == {*MODELS, "kling-v3.0-std-t2v"}
    assert made["kling-v2.1-i2v"]["duration"] == "5"  # a string on v2.1
    assert made["kling-v2.1-i2v"]["guidance_scale"] == 0.4  # cfg_scale, by its v2.1 name
    assert (
        made["kling-v3.0-std-i2v"]["cfg_scale"] == 0.4
        and made["kling-v3.0-std-i2v"]["sound"] is False
    )
    assert "sound" not in made["kling-o1-i2v"] and "cfg_scale" not in made["kling-o1-i2v"]
    assert (
        made["kling-v3.0-std-t2v"]["duration"] == 12 and "image" not in made["kling-v3.0-std-t2v"]
    )
    assert threaded_sim.stats.rejected == {}

    with (run_dir / "report.csv").open(encoding="utf-8") as report:
        rows = {r["task_key"]: r for r in csv.DictReader(report)}
    assert [rows[f"cat/{i}"]["model"] for i in range(1, 5)] == list(MODELS)  # as listed
    assert rows["city/1"]["image"] == "" and rows["city/1"]["status"] == "succeeded"
    assert all((run_dir / r["video_path"]).is_file() for r in rows.values())


def test_a_field_the_model_does_not_take_names_the_model_and_what_it_takes(tmp_path, capsys):
    draw_image(tmp_path / "a.png")
    path = tmp_path / "m.yaml"
    path.write_text(
        "rows:\n  - {image: a.png, prompt: p, model: kling-o1-i2v, negative_prompt: blur}\n"
        "  - {image: a.png, prompt: p, model: kling-v9}\n",
        encoding="utf-8",
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "negative_prompt = 'blur': is not a field of kling-o1-i2v" in err
    assert "it takes: aspect_ratio, duration, end_image, image, last_image, prompt" in err
    assert "model = 'kling-v9': is not a model; known: kling-v2.6-pro-i2v" in err


def test_images_in_bulk_a_glob_or_a_folder_is_one_task_per_file(tmp_path, capsys):
    for name in ("b.png", "a.jpg", "c.jpeg"):
        draw_image(tmp_path / "frames" / name)
    (tmp_path / "frames" / "notes.txt").write_text("not an image", encoding="utf-8")
    path = tmp_path / "bulk.csv"
    path.write_text("image\nframes/*.png\nframes\n", encoding="utf-8")
    assert (
        main(["validate", str(path), "--set", "prompt=slow push in", "--set", "sound=false"]) == 2
    )
    err = capsys.readouterr().err
    assert "row 'b': id = 'b': is used twice" in err  # b.png matched by both lines

    path.write_text("id,image\nshot,frames\n", encoding="utf-8")
    assert (
        main(["validate", str(path), "--set", "prompt=slow push in", "--set", "sound=false"]) == 0
    )
    out = capsys.readouterr().out
    assert "OK, 3 task(s) from 3 row(s)" in out and "image frames: 3 file(s)" in out

    path.write_text("image,prompt\nframes/*.gif,p\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    said = capsys.readouterr().err
    assert "image = 'frames/*.gif': matches no picture (.png, .jpg, .jpeg, .heic" in said


def test_a_folder_runs_with_keys_from_the_file_names(tmp_path, threaded_sim):
    for name in ("dawn.png", "dusk.png"):
        draw_image(tmp_path / "frames" / name)
    path = tmp_path / "bulk.yaml"
    path.write_text(
        "defaults: {sound: false}\nrows:\n  - {image: frames, prompt: slow push in}\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), *FAST]) == 0
    with (run_dir / "report.csv").open(encoding="utf-8") as report:
        keys = [r["task_key"] for r in csv.DictReader(report)]
    assert keys == ["dawn/1", "dusk/1"]


@pytest.mark.parametrize("model", sorted(ALL_MODELS))
def test_every_model_runs_end_to_end_with_its_own_wire(model, tmp_path, threaded_sim):
    """One minimal valid row per model, through the CLI and the simulator (which checks
    the body against that model's contract): the body holds only the model's own wire
    names, and the task is made at the model's path."""
    spec = ALL_MODELS[model]
    draw_image(tmp_path / "a.png")
    image = "image: a.png, " if "image" in spec.image_fields else ""
    path = tmp_path / "one.yaml"
    path.write_text(
        f"rows:\n  - {{id: one, {image}prompt: a quiet harbour, model: {model}}}\n",
        encoding="utf-8",
    )
    assert main(["run", str(path), "--out", str(tmp_path / "run"), *FAST]) == 0
    [task] = threaded_sim.tasks.values()
    assert task.model == model and threaded_sim.stats.rejected == {}
    sent = {*task.request, *(("image",) if image else ())}
    assert sent <= {f.sent_as for f in spec.fields}


def test_prices_per_model_from_the_command_line(comparison, capsys):
    assert main(["validate", str(comparison), "--price-per-second", "kling-o1-i2v.standard=1"]) == 0
    out = capsys.readouterr().out
    assert "1 x  5s standard        ~ $5.00 on kling-o1-i2v" in out
    assert "prices (kling-o1-i2v): standard $1/s" in out
