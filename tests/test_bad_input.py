"""Bad input gets a clear message that points at the fix (file, line, row, field) and
exit 2, and input that would silently change meaning is refused or said: each case here
was once a traceback, a wrong split, or a misleading message."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from runner.cli.commands import main
from tests.conftest import FAST, draw_image


@pytest.fixture(autouse=True)
def frame(tmp_path: Path) -> Path:
    return draw_image(tmp_path / "a.png", 640, 360)


def validate(path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["validate", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def csv_file(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode(encoding))
    return path


# --- YAML ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "said"), [("1", "YAML reads 1 as a int; quote it"), ("on", "YAML reads on as a bool")]
)
def test_a_key_that_is_not_text_is_a_message_not_a_traceback(tmp_path, capsys, key, said):
    path = yaml_file(tmp_path, f"rows:\n  - {{image: a.png, prompt: p, {key}: x}}\n")
    code, _, err = validate(path, capsys)
    assert code == 2 and f"m.yaml:2: {key}: a field name must be text: {said}" in err


def test_the_same_key_twice_in_a_row_is_refused(tmp_path, capsys):
    path = yaml_file(
        tmp_path,
        """\
        rows:
          - image: a.png
            prompt: first
            duration: 5
            prompt: second
        """,
    )
    code, _, err = validate(path, capsys)
    assert code == 2
    assert "m.yaml:5: prompt: is given twice in one mapping (first at line 3)" in err


def test_an_unquoted_ratio_says_to_quote_it(tmp_path, capsys):
    path = yaml_file(tmp_path, "rows:\n  - {image: a.png, prompt: p, aspect_ratio: 16:9}\n")
    code, _, err = validate(path, capsys)
    assert code == 2
    assert "aspect_ratio = '16:9': YAML reads it unquoted as a number; write \"16:9\"" in err


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path, capsys):
    path = yaml_file(
        tmp_path,
        """\
        rows:
          - image: a.png
            prompt: "fine"
          - image: a.png
            prompt: "never closed
          - image: a.png
            prompt: later
        """,
    )
    code, _, err = validate(path, capsys)
    assert code == 2 and "m.yaml:5: is not valid YAML: while scanning a quoted scalar" in err


def test_no_rows_is_a_problem_not_an_ok_for_nothing(tmp_path, capsys):
    code, _, err = validate(yaml_file(tmp_path, "rows: []\n"), capsys)
    assert code == 2 and "has no rows: nothing would run" in err


def test_a_folder_given_as_the_manifest(tmp_path, capsys):
    code, _, err = validate(tmp_path, capsys)
    assert code == 2 and "is a folder: name a .yaml or .csv file" in err


# --- CSV --------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c"])
def test_a_line_separator_inside_a_prompt_keeps_the_row_whole(tmp_path, capsys, separator):
    path = csv_file(tmp_path, f"image,prompt\na.png,one{separator}two\na.png,three\n")
    code, out, err = validate(path, capsys)
    assert code == 0, err
    assert "OK, 2 task(s) from 2 row(s)" in out


def test_excel_rows_of_only_commas_are_skipped(tmp_path, capsys):
    path = csv_file(tmp_path, "image,prompt,duration\r\na.png,p,5\r\n,,\r\n,,\r\n")
    code, out, err = validate(path, capsys)
    assert code == 0, err
    assert "OK, 1 task(s) from 1 row(s)" in out


def test_a_semicolon_separated_csv_is_read(tmp_path, capsys):
    path = csv_file(tmp_path, "image;prompt;duration\na.png;a cat, slowly;10\n")
    code, out, err = validate(path, capsys, "--set", "sound=false")
    assert code == 0, err
    assert "1 x 10s no sound" in out  # the comma stayed inside the prompt


def test_a_windows_1252_csv_names_the_encoding_and_the_fix(tmp_path, capsys):
    path = csv_file(tmp_path, "image,prompt\na.png,caf\u00e9 au lait\n", encoding="cp1252")
    code, _, err = validate(path, capsys)
    assert code == 2
    assert "m.csv:2: is not UTF-8 text (byte 0xe9 on this line" in err and "CSV UTF-8" in err


def test_a_typo_in_the_header_gets_a_did_you_mean(tmp_path, capsys):
    code, _, err = validate(csv_file(tmp_path, "image,promt\na.png,p\n"), capsys)
    assert code == 2 and "missing: prompt (did you mean 'promt' for 'prompt'?)" in err


# --- values -------------------------------------------------------------------------


def test_image_urls_by_scheme(tmp_path, capsys):
    path = csv_file(
        tmp_path, "id,image,prompt\nup,HTTPS://example.com/x.png,p\nftp,ftp://example.com/x.png,p\n"
    )
    code, _, err = validate(path, capsys)
    assert code == 2
    assert "row 'ftp': image = 'ftp://example.com/x.png': only http(s) URLs and local" in err
    assert "row 'up'" not in err  # an upper-case scheme is still a URL


def test_a_truncated_jpeg_is_found_by_validate(tmp_path, capsys):
    whole = io.BytesIO()
    Image.effect_noise((800, 600), 60).convert("RGB").save(whole, "JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    path = csv_file(tmp_path, "image,prompt\ncut.jpg,p\n")
    code, _, err = validate(path, capsys)
    assert code == 2 and "cut.jpg': is damaged or cut short" in err  # the file, named


def test_an_exif_turned_image_warns_when_it_disagrees_with_the_aspect_ratio(tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees: stored landscape, shown portrait
    Image.new("RGB", (1280, 720), (9, 9, 9)).save(tmp_path / "turned.jpg", exif=exif)
    path = csv_file(tmp_path, "image,prompt,aspect_ratio\nturned.jpg,p,16:9\n")
    code, _, err = validate(path, capsys)
    assert code == 0
    assert "turned.jpg': is stored landscape but its EXIF shows it portrait, and it is sent " in err
    assert "portrait; aspect_ratio is 16:9 (landscape)" in err


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--submit-rate", "fast", "a rate looks like 20/min or 5/s, not 'fast'"),
        ("--budget", "-5", "a budget is dollars, 0 or more"),
        ("--task-timeout", "0", "seconds, more than 0"),
    ],
)
def test_options_say_what_they_take(tmp_path, capsys, option, value, said):
    path = csv_file(tmp_path, "image,prompt\na.png,p\n")
    with pytest.raises(SystemExit) as exited:
        main(["run", str(path), "--simulate", option, value])
    assert exited.value.code == 2 and said in capsys.readouterr().err


# --- files people open elsewhere -------------------------------------------------------


def test_the_report_has_a_spreadsheet_copy_with_a_bom_and_no_live_formulas(tmp_path, threaded_sim):
    path = csv_file(
        tmp_path,
        'image,prompt,negative_prompt\na.png,"=HYPERLINK(""http://x"")",blur\n'
        "a.png,\u732b\u304c\u632f\u308a\u5411\u304f,\n",
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), *FAST, "--set", "sound=false"]) == 0
    raw = (run_dir / "report-excel.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0]["prompt"] == '\'=HYPERLINK("http://x")' and rows[1]["prompt"] == "猫が振り向く"
    with (run_dir / "report.csv").open(encoding="utf-8") as exact:
        assert next(csv.DictReader(exact))["prompt"] == '=HYPERLINK("http://x")'
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "blur" in page.split('data-text="', 2)[1].split('"', 1)[0]  # negative prompt found
    assert "white-space: pre-wrap; overflow-wrap: anywhere" in page


def test_the_page_shows_markup_in_a_prompt_or_an_id_as_text(tmp_path, threaded_sim):
    """The report page is a Jinja2 template with every value escaped: a prompt, a row
    id or a reason holding markup is text on the page, never a script."""
    path = csv_file(
        tmp_path,
        'id,image,prompt\n"x<img src=x onerror=alert(1)>",a.png,"<script>alert(1)</script> & co"\n',
    )
    run_dir = tmp_path / "run"
    main(["run", str(path), "--out", str(run_dir), *FAST, "--set", "sound=false"])
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
