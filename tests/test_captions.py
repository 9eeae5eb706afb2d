"""Prompts that go with the pictures: in a row whose image is a glob or a folder,
``{caption}`` is the text of the same-name .txt beside each image and ``{name}`` its
file's stem; a picture without its caption, or a field no prompt can name, is a
problem naming it. The simulator's books show what each task was sent."""

from __future__ import annotations

import textwrap
from pathlib import Path

from runner.cli.commands import main
from runner.manifest.files import load
from runner.manifest.rows import expand
from tests.conftest import FAST, draw_image


def shots(tmp_path: Path, prompt: str, captions: dict[str, str]) -> Path:
    for name in ("cat", "dog"):
        draw_image(tmp_path / "shots" / f"{name}.png")
    for name, text in captions.items():
        (tmp_path / "shots" / f"{name}.txt").write_text(text, encoding="utf-8")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        textwrap.dedent(
            f"""\
            defaults: {{sound: false}}
            rows:
              - {{id: s, image: shots/, prompt: {prompt!r}, negative_prompt: "blur, {{name}}"}}
            """
        ),
        encoding="utf-8",
    )
    return manifest


def test_each_image_gets_its_own_caption_and_name(tmp_path, threaded_sim):
    manifest = shots(
        tmp_path,
        "{caption}, slow push-in on the {name}",
        {"cat": "A grey cat\non a sofa\n", "dog": "\ufeffA dog  runs 🐕"},
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    sent = sorted(
        (task.request["prompt"], task.request["negative_prompt"])
        for task in threaded_sim.tasks.values()
    )
    assert sent == [
        ("A dog runs 🐕, slow push-in on the dog", "blur, dog"),
        ("A grey cat on a sofa, slow push-in on the cat", "blur, cat"),
    ]


def test_a_picture_without_its_caption_is_a_problem_naming_it(tmp_path, capsys):
    manifest = shots(tmp_path, "{caption}", {"cat": "a cat"})
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "row 's': prompt = 'dog.png': {caption} needs dog.txt beside the image" in err
    assert "cat.png" not in err


def test_an_empty_caption_is_a_problem(tmp_path, capsys):
    manifest = shots(tmp_path, "{caption}", {"cat": "a cat", "dog": "  \n"})
    assert main(["validate", str(manifest)]) == 2
    assert "{caption}: dog.txt is empty" in capsys.readouterr().err


def test_a_field_no_prompt_can_name_says_what_it_may_have_meant(tmp_path, capsys):
    manifest = shots(tmp_path, "{captoin} at dusk", {})
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "{captoin} is not a field a prompt can name (did you mean {caption}?)" in err


def test_other_braces_and_single_image_rows_are_left_as_text(tmp_path, capsys):
    draw_image(tmp_path / "one.png")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        'rows:\n  - {image: one.png, prompt: "keep {caption} and {x-y} as typed"}\n',
        encoding="utf-8",
    )
    assert main(["validate", str(manifest)]) == 0
    (spec,), problems = expand(load(manifest))
    assert problems == [] and spec.values["prompt"] == "keep {caption} and {x-y} as typed"


def test_a_list_of_prompts_is_filled_item_by_item(tmp_path):
    manifest = shots(tmp_path, "{name}", {})
    manifest.write_text(
        manifest.read_text().replace("prompt: '{name}'", "prompt: ['{name} one', '{name} two']")
    )
    specs, problems = expand(load(manifest))
    assert problems == []
    assert sorted(spec.values["prompt"] for spec in specs) == [
        "cat one",
        "cat two",
        "dog one",
        "dog two",
    ]
