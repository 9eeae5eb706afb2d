"""First contact (issue 28, items 2 and 7): under each reading of what Novita's pages
leave open, a batch completes with at most two refused submits and nothing billed by
accident twice, or stops after at most two billed tasks naming the field; and a second
run folder starts with what the first learned. The simulator plays each reading; its
books (what was created, what was refused) are the judge."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from runner.api.learned import Learned
from runner.cli.commands import main
from runner.simulator import Readings, strict_docs
from tests.conftest import CANARY_FAST, draw_image, ledger_statuses, write_rows


def statuses(run_dir: Path) -> list[str]:
    return sorted(ledger_statuses(run_dir).values())


def refused(sim) -> int:
    return sum(sim.stats.rejected.values())


def run(manifest: Path, run_dir: Path, *extra: str) -> int:
    return main(["run", str(manifest), "--out", str(run_dir), *CANARY_FAST, *extra])


def manifest_of(folder: Path, body: str) -> Path:
    draw_image(folder / "frame.png")
    draw_image(folder / "last.png")
    path = folder / "night.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_an_api_that_takes_data_uris_only_costs_one_refusal_and_is_remembered(
    threaded_sim, tmp_path, capsys
):
    threaded_sim.config.readings = Readings(image="data-uri")
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 8)
    assert run(manifest, tmp_path / "first") == 0
    err = capsys.readouterr().err
    assert "image was refused as raw base64 (no data: prefix); trying a data:image/" in err
    assert refused(threaded_sim) == 1 and threaded_sim.stats.tasks_created == 8
    assert set(threaded_sim.stats.created_by_prompt.values()) == {1}
    learned = Learned.open(threaded_sim.base_url)
    assert learned.get("kling-v2.6-pro-i2v/image").value == "data-uri"
    assert learned.get("kling-v2.6-pro-i2v/image").proof == "succeeded"

    assert run(manifest, tmp_path / "second") == 0  # a new folder starts with it
    assert refused(threaded_sim) == 1 and threaded_sim.stats.tasks_created == 16


def test_pictures_that_fail_after_billing_cost_one_canary_then_go_in_the_other_form(
    threaded_sim, tmp_path, capsys
):
    threaded_sim.config.readings = Readings(image="raw-fails")
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 10)
    assert run(manifest, tmp_path / "first") == 0
    err = capsys.readouterr().err
    assert "the canary r0/1 ended failed: Image pixel is invalid" in err
    assert "Its first attempt failed for the wire form, not for its content: sent again" in err
    created = threaded_sim.stats.created_by_prompt
    assert created["prompt 0"] == 2 and sum(created.values()) == 11  # one task lost, once
    assert statuses(tmp_path / "first") == ["succeeded"] * 10

    assert run(manifest, tmp_path / "second") == 0  # learned: no picture fails again
    assert sum(created.values()) == 21 and refused(threaded_sim) == 0


def test_two_picture_forms_that_both_fail_after_billing_stop_after_two_billed_tasks(
    threaded_sim, tmp_path, capsys
):
    threaded_sim.config.readings = Readings(image="raw-fails")
    threaded_sim.script_fates("succeed", "fail")  # the second form's canary fails too
    threaded_sim.config.fail_reason = "Image pixel is invalid"
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 6)
    assert run(manifest, tmp_path / "run") == 1
    captured = capsys.readouterr()
    assert threaded_sim.stats.tasks_created == 2
    assert "5 task(s) of kling-v2.6-pro-i2v held by its canary" in captured.out
    assert statuses(tmp_path / "run") == ["failed"] + ["pending"] * 5


def test_voice_ids_as_plain_strings_cost_one_refusal(threaded_sim, tmp_path, capsys):
    threaded_sim.config.readings = Readings(voices="ids")
    manifest = manifest_of(
        tmp_path,
        """\
        defaults: {voice_list: [calm_narrator], sound: true}
        rows:
          - {id: v, image: frame.png, prompt: '<<<voice_1>>> says hello', repeat: 4}
        """,
    )
    assert run(manifest, tmp_path / "run") == 0
    assert "voice_list was refused as objects" in capsys.readouterr().err
    assert refused(threaded_sim) == 1 and threaded_sim.stats.tasks_created == 4


def test_multi_prompt_that_excludes_prompt_costs_one_refusal(threaded_sim, tmp_path, capsys):
    threaded_sim.config.readings = Readings(multi_prompt_alone=True)
    manifest = manifest_of(
        tmp_path,
        """\
        defaults: {model: kling-v3.0-pro-i2v, duration: 6}
        rows:
          - id: shots
            image: frame.png
            prompt: a lighthouse at dusk
            multi_prompt: [{prompt: the sea, duration: 3}, {prompt: the light, duration: 3}]
            repeat: 3
        """,
    )
    assert run(manifest, tmp_path / "run") == 0
    assert "multi_prompt was refused as beside prompt; trying instead of prompt" in (
        capsys.readouterr().err
    )
    assert refused(threaded_sim) == 1 and threaded_sim.stats.tasks_created == 3


def test_a_url_only_end_image_refuses_those_rows_and_the_rest_go_on(threaded_sim, tmp_path, capsys):
    threaded_sim.config.readings = Readings(end_image_url_only=True)
    manifest = manifest_of(
        tmp_path,
        """\
        defaults: {model: kling-v3.0-std-i2v}
        rows:
          - {id: plain, image: frame.png, prompt: a field of wheat, repeat: 2}
          - {id: ends, image: frame.png, end_image: last.png, prompt: a door opens, repeat: 2}
        """,
    )
    assert run(manifest, tmp_path / "run") == 1
    assert refused(threaded_sim) == 2  # bare base64, then a data URI: once per form
    assert threaded_sim.stats.tasks_created == 2  # the rows without an end image
    assert statuses(tmp_path / "run") == ["failed", "failed", "succeeded", "succeeded"]
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "2 input" in out  # not resent by rerun --failed: they need a URL first


def test_a_whole_batch_under_the_strict_reading_of_the_docs(threaded_sim, tmp_path, capsys):
    """Every reading likeliest to differ, at once (``kling-batch sim --strict-docs``); Task
    Result's lag is shortened here (its minutes are tested on an injected clock)."""
    strict_docs(threaded_sim.config)
    threaded_sim.config.result_lag_s = 0.2
    manifest = manifest_of(
        tmp_path,
        """\
        rows:
          - {id: plain, image: frame.png, prompt: a quiet harbour, sound: false, repeat: 3}
          - {id: voiced, image: frame.png, prompt: hello, voice_list: [calm], repeat: 2}
          - id: shots
            model: kling-v3.0-pro-i2v
            image: frame.png
            duration: 6
            prompt: a lighthouse
            multi_prompt: [{prompt: the sea, duration: 3}, {prompt: the light, duration: 3}]
            repeat: 2
          - {id: ends, model: kling-v3.0-std-i2v, image: frame.png, end_image: last.png,
             prompt: a door opens}
        """,
    )
    run_dir = tmp_path / "run"
    assert run(manifest, run_dir) == 1  # the end-image row needs a URL
    # voice_list, multi_prompt: one refusal each; the end image: one per picture form.
    assert sum(threaded_sim.stats.rejected.values()) == 4
    with sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True) as db:
        made = dict(
            db.execute(
                "SELECT task_key, COUNT(*) FROM attempts WHERE outcome = 'created' "
                "GROUP BY task_key"
            )
        )
    # Each picture canary's row was billed twice (its bare base64 failed after billing),
    # for two models; every other task once; the end-image row never.
    assert sorted(k for k, n in made.items() if n == 2) == ["plain/1", "shots/1"]
    assert set(made.values()) <= {1, 2} and "ends/1" not in made
    assert threaded_sim.stats.tasks_created == sum(made.values()) == 9
    assert statuses(run_dir) == ["failed"] + ["succeeded"] * 7


@pytest.mark.parametrize("forced", ["image=data-uri", "kling-v2.6-pro-i2v.image=data-uri"])
def test_wire_forces_a_form_and_nothing_is_tried_before_it(threaded_sim, tmp_path, forced):
    threaded_sim.config.readings = Readings(image="data-uri")
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 3)
    assert run(manifest, tmp_path / "run", "--wire", forced) == 0
    assert refused(threaded_sim) == 0 and threaded_sim.stats.tasks_created == 3


def test_a_wire_option_that_names_no_open_field_is_a_usage_error(tmp_path, capsys):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 1)
    with pytest.raises(SystemExit) as exited:
        main(["run", str(manifest), "--simulate", "--wire", "prompt=loud"])
    assert exited.value.code == 2
    assert "--wire takes FIELD=FORM" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(manifest), "--simulate", "--wire", "image=data-url"])
    assert "--wire image: its forms are data-uri, raw-base64, not 'data-url'" in (
        capsys.readouterr().err
    )
