"""Manifest loading and expansion: YAML, bare lists, CSV, --set, keys, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.core.errors import ManifestError
from runner.manifest.files import load
from runner.manifest.rows import expand, parse_overrides


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_defaults_apply_and_rows_override(tmp_path):
    manifest = load(
        write(
            tmp_path / "m.yaml",
            "defaults: {duration: 10, sound: false}\n"
            "rows:\n"
            "  - {id: a, image: a.png, prompt: one}\n"
            "  - {id: b, image: b.png, prompt: two, duration: 5}\n",
        )
    )
    tasks, problems = expand(manifest)
    assert problems == []
    assert [(t.key, t.values["duration"], t.values["sound"]) for t in tasks] == [
        ("a/1", 10, False),
        ("b/1", 5, False),
    ]


def test_bare_list_and_default_ids_are_row_numbers(tmp_path):
    manifest = load(
        write(tmp_path / "m.yml", "- {image: a.png, prompt: x}\n- {image: b.png, prompt: y}\n")
    )
    tasks, _ = expand(manifest)
    assert [t.key for t in tasks] == ["1/1", "2/1"]
    assert [t.line for t in tasks] == [1, 2]


def test_lists_expand_as_a_product_and_repeat_is_the_outer_loop(tmp_path):
    manifest = load(
        write(
            tmp_path / "m.yaml",
            "rows:\n"
            "  - id: city\n"
            "    image: c.png\n"
            "    prompt: [sunrise, night]\n"
            "    duration: [5, 10]\n"
            "    repeat: 2\n",
        )
    )
    tasks, problems = expand(manifest)
    assert problems == []
    combos = [(t.key, t.values["duration"], t.values["prompt"]) for t in tasks]
    assert combos[:4] == [
        ("city/1", 5, "sunrise"),
        ("city/2", 5, "night"),
        ("city/3", 10, "sunrise"),
        ("city/4", 10, "night"),
    ]
    # The second repeat appends keys 5..8 with the same combinations: raising `repeat`
    # never renumbers a task that was already paid for.
    assert [t.values for t in tasks[4:]] == [t.values for t in tasks[:4]]
    assert [t.key for t in tasks[4:]] == ["city/5", "city/6", "city/7", "city/8"]


def test_key_order_in_the_row_does_not_change_numbering(tmp_path):
    one = load(
        write(tmp_path / "a.yaml", "- {id: r, image: x.png, prompt: [p, q], duration: [5, 10]}\n")
    )
    two = load(
        write(tmp_path / "b.yaml", "- {id: r, duration: [5, 10], prompt: [p, q], image: x.png}\n")
    )
    assert [t.values for t in expand(one)[0]] == [t.values for t in expand(two)[0]]


def test_voice_list_is_one_value_unless_a_list_of_lists(tmp_path):
    manifest = load(
        write(
            tmp_path / "m.yaml",
            "- {id: one, image: x.png, prompt: p, voice_list: [v1, v2]}\n"
            "- {id: two, image: x.png, prompt: p, voice_list: [[v1], [v2]]}\n",
        )
    )
    tasks, _ = expand(manifest)
    assert [(t.key, t.values["voice_list"]) for t in tasks] == [
        ("one/1", ["v1", "v2"]),
        ("two/1", ["v1"]),
        ("two/2", ["v2"]),
    ]


def test_csv_rows_header_empty_cells_and_overrides(tmp_path):
    path = write(
        tmp_path / "m.csv",
        "id,image,prompt,duration,voice_list\n"
        "a,a.png,first,,v1;v2\n"
        'b,b.png,"second, with comma",10,\n',
    )
    manifest = load(path, parse_overrides(["duration=5", "sound=false"]))
    tasks, problems = expand(manifest)
    assert problems == []
    assert tasks[0].values == {
        "image": "a.png", "prompt": "first", "voice_list": "v1;v2", "duration": 5, "sound": False,
    }  # fmt: skip
    assert tasks[0].row_id == "a"
    assert tasks[1].values["duration"] == "10"  # the row beats --set; coerced later
    assert tasks[1].values["prompt"] == "second, with comma"
    assert [t.line for t in tasks] == [2, 3]


def test_set_beats_the_manifest_defaults_but_not_the_rows(tmp_path):
    path = write(
        tmp_path / "m.yaml",
        "defaults: {duration: 5, cfg_scale: 0.2}\n"
        "rows:\n  - {image: a.png, prompt: p, cfg_scale: 0.9}\n",
    )
    [task], _ = expand(load(path, parse_overrides(["duration=10", "cfg_scale=0.1"])))
    assert task.values["duration"] == 10
    assert task.values["cfg_scale"] == 0.9


def test_parse_overrides_rejects_a_pair_without_equals():
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["duration"])


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "rows:\n  - id: a\n    prompt: [unclosed\n")
    with pytest.raises(ManifestError) as caught:
        load(path)
    [problem] = caught.value.problems
    assert problem.file == str(path)
    assert problem.line is not None
    assert "not valid YAML" in str(problem)


def test_csv_without_a_header_says_what_is_missing(tmp_path):
    path = write(tmp_path / "m.csv", "cat.png,a cat turns\n")
    with pytest.raises(ManifestError) as caught:
        load(path)
    assert "header" in str(caught.value)
    assert "missing: image, prompt" in str(caught.value)


def test_csv_row_with_extra_cells_is_a_problem(tmp_path):
    manifest = load(write(tmp_path / "m.csv", "image,prompt\na.png,p,surprise\n"))
    _, problems = expand(manifest)
    assert [(p.line, p.rule) for p in problems] == [(2, "has more cells than the header")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rows: {a: 1}\n", "must be a list of rows"),
        ("defaults: {}\nrow: []\n", "unknown: row"),
        ("- just a string\n", "a row must be a mapping"),
    ],
)
def test_wrong_shapes_are_reported(tmp_path, text, expected):
    path = write(tmp_path / "m.yaml", text)
    try:
        manifest = load(path)
    except ManifestError as exc:
        assert expected in str(exc)
        return
    _, problems = expand(manifest)
    assert any(expected in str(p) for p in problems)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ManifestError, match="file not found"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match=r"\.yaml, \.yml or \.csv"):
        load(write(tmp_path / "m.json", "[]"))


def test_duplicate_ids_bad_repeat_and_empty_lists(tmp_path):
    manifest = load(
        write(
            tmp_path / "m.yaml",
            "- {id: a, image: x.png, prompt: p}\n"
            "- {id: a, image: x.png, prompt: p}\n"
            "- {id: r, image: x.png, prompt: p, repeat: 0}\n"
            "- {id: e, image: x.png, prompt: []}\n"
            "- {id: 'x/y', image: x.png, prompt: p}\n",
        )
    )
    tasks, problems = expand(manifest)
    assert [t.key for t in tasks] == ["a/1"]
    rules = {(p.row, p.field): p.rule for p in problems}
    assert "used twice (first at line 1)" in rules["a", "id"]
    assert "from 1 to" in rules["r", "repeat"]
    assert "empty list" in rules["e", "prompt"]
    assert "must not contain '/'" in rules["x/y", "id"]
