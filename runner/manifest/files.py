"""Read a manifest file, YAML or CSV, into rows, saying what is wrong where it is.

Both formats get the same care: the line where a problem starts, and the things a
format reads silently differently from what a person wrote (YAML's ``on:`` and
``16:9``, a key given twice; a CSV saved with semicolons, in Windows-1252, with a
prompt holding a line separator) are said, not guessed at.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from jobs.pictures import PICTURE_SUFFIXES
from runner.core.errors import ManifestError
from runner.manifest.rows import SEXAGESIMAL, Manifest, Problem, Row, gc_paused

YAML_SUFFIXES = (".yaml", ".yml")


def load(path: Path, overrides: Mapping[str, Any] | None = None) -> Manifest:
    """Read a manifest file; ``overrides`` act as defaults that beat the file's own."""
    overrides = dict(overrides or {})
    if str(path) == STDIN:
        return _load_stdin(overrides)
    if path.is_dir():
        raise ManifestError(
            [Problem(str(path), None, None, None, None, "is a folder: name a .yaml or .csv file")]
        )
    if not path.is_file():
        raise ManifestError([Problem(str(path), None, None, None, None, "file not found")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            [Problem(str(path), None, None, None, None, f"cannot be read: {exc.strerror}")]
        ) from None
    text = _text(path, raw)
    with gc_paused():  # a million small objects at once: see gc_paused
        if path.suffix.lower() in YAML_SUFFIXES:
            return _with_image_patterns(_load_yaml(path, text, overrides))
        if path.suffix.lower() == ".csv":
            return _with_image_patterns(_load_csv(path, text, overrides))
    raise ManifestError(
        [Problem(str(path), None, None, None, None, "must be a .yaml, .yml or .csv file")]
    )


STDIN = "-"


def _load_stdin(overrides: dict[str, Any]) -> Manifest:
    """``kling-batch validate -``: a manifest piped in (``generate | kling-batch run -``),
    YAML or, when its first line reads as a header of names, CSV; paths in it are
    relative to the current folder."""
    path = Path("<stdin>")
    text = _text(path, sys.stdin.buffer.read())
    first = next((line for line in text.splitlines() if line.strip()), "")
    if ":" not in first and _delimiter(first) in first:
        return _with_image_patterns(_load_csv(path, text, overrides))
    return _with_image_patterns(_load_yaml(path, text, overrides))


def _text(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            [
                Problem(
                    str(path),
                    None,
                    line,
                    None,
                    None,
                    f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on this line; likely "
                    "saved as Windows-1252 or Latin-1): save it as UTF-8 (Excel: Save As, "
                    "'CSV UTF-8'; an editor: encoding UTF-8)",
                )
            ]
        ) from None


# What a manifest's aliases may expand to: a 1 KB "billion laughs" (aliases of aliases)
# is 10^9 values once expanded, and every check that walks it would run for minutes.
MAX_YAML_VALUES = 2_000_000
# Top-level keys for shared settings that rows take with merge keys (``<<: *base``),
# as docker-compose has it: ``x-base: &base {...}``.
SHARED_PREFIX = "x-"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when it is there
# An anchor (``&name``): without one there is no alias, so nothing can expand or refer
# to itself, and the walk that checks it (seconds on 100,000 rows) is not needed. A
# prompt such as "salt &pepper" only costs that walk.
_ANCHOR = re.compile(r"&[^\s,\[\]{}]")


def _parse_yaml(name: str, text: str) -> tuple[Any, yaml.Node | None, list[Problem]]:
    """Parse once (libyaml's C parser when present), check the node graph, then build
    the values from it: an alias that holds itself, or aliases that expand past
    :data:`MAX_YAML_VALUES`, are refused before anything walks them. The mapping
    problems are found before the values are built, since building merges each
    ``<<: *base`` into its mapping's node."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None, []
        problem = _expansion_problem(root) if _ANCHOR.search(text) else None
        if problem:
            raise ManifestError([Problem(name, None, None, None, None, problem)])
        problems = _yaml_mapping_problems(name, root)
        return loader.construct_document(root), root, problems
    except yaml.YAMLError as exc:
        raise ManifestError([_yaml_problem(name, exc)]) from None
    finally:
        loader.dispose()


def _expansion_problem(root: yaml.Node) -> str | None:
    """How many values the document holds once every alias is expanded (each shared
    node counted once per use, computed once), without recursion: a self-referring
    alias is found on the way."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        kids = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[id(node)] > MAX_YAML_VALUES:
                return (
                    f"its aliases expand to more than {MAX_YAML_VALUES:,} values (aliases "
                    "of aliases, a 'billion laughs'): write the values out, or use defaults:"
                )
            continue
        if id(node) in open_nodes:
            line = node.start_mark.line + 1
            return f"an alias refers to the value that holds it (line {line}): it never ends"
        open_nodes.add(id(node))
        stack.append((node, True))
        for kid in kids:
            if id(kid) in open_nodes:
                line = kid.start_mark.line + 1
                return f"an alias refers to the value that holds it (line {line}): it never ends"
            stack.append((kid, False))
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _load_yaml(path: Path, text: str, overrides: dict[str, Any]) -> Manifest:
    name = str(path)
    data, root, problems = _parse_yaml(name, text)

    defaults: dict[str, Any] = {}
    prices: dict[str, Any] = {}
    rows_node: yaml.Node | None = root
    if isinstance(data, dict):
        unknown = sorted(
            str(k)
            for k in set(data) - {"defaults", "rows", "prices"}
            if not str(k).startswith(SHARED_PREFIX)
        )
        if unknown or "rows" not in data:
            rule = "top level takes 'defaults', 'prices' and 'rows'" + (
                f"; unknown: {', '.join(map(str, unknown))} (shared settings for merge keys "
                f"go under a key that starts with '{SHARED_PREFIX}', e.g. x-base: &base)"
                if unknown
                else "; 'rows' is missing"
            )
            raise ManifestError([Problem(name, None, 1, None, None, rule)])
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ManifestError(
                [Problem(name, None, None, "defaults", None, "must be a mapping of field: value")]
            )
        prices = data.get("prices") or {}
        if not isinstance(prices, dict):
            raise ManifestError(
                [Problem(name, None, None, "prices", None, "must be a mapping of tier: USD")]
            )
        data = data["rows"]
        rows_node = _child(root, "rows")
    if not isinstance(data, list):
        raise ManifestError(
            [Problem(name, None, 1, None, None, "must be a list of rows, or defaults + rows")]
        )

    assert rows_node is not None and root is not None  # parsed above: data is a list
    lines = [item.start_mark.line + 1 for item in rows_node.value]
    defaults_node = _child(root, "defaults")
    merged_defaults = {**_without(defaults, defaults_node), **overrides}
    rows = []
    for number, (item, node, line) in enumerate(
        zip(data, rows_node.value, lines, strict=True), start=1
    ):
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    name, str(number), line, None, None, "a row must be a mapping of field: value"
                )
            )
            continue
        own = _without(item, node)
        rows.append(
            Row(number, line, {**merged_defaults, **own}, frozenset(merged_defaults) - set(own))
        )
    return Manifest(path, rows, problems, prices)


def _child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """The value node under ``name`` in a top-level mapping, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if k.value == name), None)


def _text_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    """Only text keys: the others are reported (``_yaml_mapping_problems``) and dropped,
    so that the checks that follow compare names with names."""
    return {k: v for k, v in mapping.items() if isinstance(k, str)}


def _yaml_problem(name: str, exc: yaml.YAMLError) -> Problem:
    """Where the trouble *started* (an unclosed quote opens on line 4, not at the end of
    the file where the parser gives up), and what the parser said."""
    start = getattr(exc, "context_mark", None)
    found = getattr(exc, "problem_mark", None)
    mark = start or found
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    detail = ": ".join(str(p) for p in parts if p) or str(exc)
    if start is not None and found is not None and found.line != start.line:
        detail += f" (noticed at line {found.line + 1})"
    return Problem(
        name, None, mark.line + 1 if mark else None, None, None, f"is not valid YAML: {detail}"
    )


def _yaml_mapping_problems(name: str, root: yaml.Node) -> list[Problem]:
    """What YAML reads silently and differently from what was written: a key given twice
    in one mapping (the last would win), a key that is not text (``1:``, or ``on:``,
    which YAML reads as true), and an unquoted ratio such as ``16:9`` (a number to YAML)."""
    problems: list[Problem] = []
    for node in _mappings(root):
        seen: dict[object, int] = {}
        ratios = _base60_keys(node)
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.tag == _MERGE:  # ``<<: *base``: the base's settings, the row's own win
                continue
            if not (key.tag == "tag:yaml.org,2002:str" and isinstance(key, yaml.ScalarNode)):
                shown = key.value if isinstance(key, yaml.ScalarNode) else "(a structure)"
                problems.append(
                    Problem(
                        name,
                        None,
                        line,
                        str(shown),
                        None,
                        "a field name must be text: "
                        f"YAML reads {shown} as a {key.tag.rsplit(':', 1)[-1]}; quote it",
                    )
                )
                continue
            if key.value in seen:
                problems.append(
                    Problem(
                        name,
                        None,
                        line,
                        key.value,
                        None,
                        f"is given twice in one mapping (first at line {seen[key.value]}); "
                        "YAML would silently keep the last",
                    )
                )
            seen.setdefault(key.value, line)
            if key.value in ratios:
                problems.append(
                    Problem(
                        name,
                        None,
                        value.start_mark.line + 1,
                        key.value,
                        value.value,
                        f'YAML reads it unquoted as a number; write "{value.value}" in quotes',
                    )
                )
    return problems


def _base60_keys(node: yaml.Node) -> set[str]:
    """Keys of a mapping whose value is an unquoted ratio YAML reads as a number: the
    problem is said once, and the value is dropped, so no second message about 969."""
    if not isinstance(node, yaml.MappingNode):
        return set()
    return {
        key.value
        for key, value in node.value
        if isinstance(key, yaml.ScalarNode)
        and isinstance(value, yaml.ScalarNode)
        and not value.style  # plain: None (Python parser) or "" (libyaml)
        and value.tag != "tag:yaml.org,2002:str"
        and SEXAGESIMAL.match(value.value)
    }


def _without(mapping: dict[Any, Any], node: yaml.Node | None) -> dict[str, Any]:
    """Text keys only, less the unquoted ratios (see :func:`_base60_keys`)."""
    dropped = _base60_keys(node) if node is not None else set()
    return {k: v for k, v in _text_keys(mapping).items() if k not in dropped}


_MERGE = "tag:yaml.org,2002:merge"


def _mappings(root: yaml.Node) -> Iterable[yaml.MappingNode]:
    """Every mapping node once, an aliased one too (no recursion: deep files are fine)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            yield node
            stack.extend(value for _, value in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))


def _load_csv(path: Path, text: str, overrides: dict[str, Any]) -> Manifest:
    name = str(path)
    # A file object, not str.splitlines: a prompt may hold U+2028, NEL or a form feed,
    # which splitlines takes for line ends; csv itself knows only \r and \n.
    delimiter = _delimiter(text)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ManifestError(
            [
                Problem(
                    name,
                    None,
                    1,
                    None,
                    None,
                    f"the header names {', '.join(twice)} more than once: a row's value "
                    "would silently be the last column's; keep one column each",
                )
            ]
        )
    # Required columns, unless --set gives them to every row; a text-to-video batch
    # (a ``model`` column or --set model=...) needs no image.
    needed = ("prompt",) if "model" in header or "model" in overrides else ("image", "prompt")
    missing = [col for col in needed if col not in header and col not in overrides]
    if missing:
        raise ManifestError([Problem(name, None, 1, None, None, _header_rule(header, missing))])
    rows, problems = [], []
    for number, record in enumerate(reader, start=1):
        line = reader.line_num
        if None in record:
            problems.append(
                Problem(name, str(number), line, None, None, "has more cells than the header")
            )
            continue
        values = {k.strip(): v for k, v in record.items() if v is not None and v.strip() != ""}
        if not values:  # a blank line, or Excel's leftover row of only commas
            continue
        rows.append(Row(number, line, {**overrides, **values}, frozenset(overrides) - set(values)))
    return Manifest(path, rows, problems)


def _delimiter(text: str) -> str:
    """Comma, or what the header line plainly uses instead (Excel in many European
    locales saves CSV with semicolons; some tools use tabs)."""
    header = text.split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","


def _header_rule(header: list[str], missing: list[str]) -> str:
    rule = (
        "the first line must be a header naming the columns "
        f"(e.g. id,image,prompt,duration); missing: {', '.join(missing)}"
    )
    hints = []
    for column in missing:
        close = difflib.get_close_matches(column, header, n=1, cutoff=0.6)
        if close:
            hints.append(f"'{close[0]}' for '{column}'")
    if hints:
        rule += f" (did you mean {', '.join(hints)}?)"
    return rule


# --- images in bulk --------------------------------------------------------------------

_GLOB = re.compile(r"[*?[]")


def _with_image_patterns(manifest: Manifest) -> Manifest:
    """A row whose ``image`` is a glob (``frames/*.png``, ``shots/*/key.png``,
    ``**/*.jpg``) or a folder becomes one row per matching file, sorted, each with an
    id from its path under the pattern's fixed part (``<row id>-<name>``, or the name
    alone for a row without an id): adding a file later adds tasks and never renumbers
    the ones already paid for. A pattern that matches nothing is a problem."""
    rows: list[Row] = []
    problems = list(manifest.problems)
    patterns: dict[str, int] = {}
    for row in manifest.rows:
        image = row.values.get("image")
        found = _matches(manifest.base_dir, image) if isinstance(image, str) else None
        if found is None:
            rows.append(row)
            continue
        base, files = found
        patterns[str(image)] = len(files)

        def problem(rule: str, value: Any = image, row: Row = row, field: str = "image") -> None:
            problems.append(Problem(str(manifest.path), row.row_id, row.line, field, value, rule))

        readable = []
        for file in files:
            if _utf8(str(file)):
                readable.append(file)
            else:
                problem("its name is not UTF-8 text: rename the file", _shown_name(file))
        if not files:
            problem(f"matches no picture ({', '.join(PICTURE_SUFFIXES)})")
        given = row.values.get("id")
        for file, name in zip(readable, _names_apart(base, readable), strict=True):
            row_id = f"{given}-{name}" if given not in (None, "") else name
            values = {**row.values, "image": str(file), "id": row_id}
            filled, stops = _fill_templates(values, file)
            values.update(filled)
            for field, shown, why in stops:
                problem(why, shown, field=field)
            rows.append(Row(row.number, row.line, values, row.defaulted - {"image"}))
    return replace(manifest, rows=rows, problems=problems, patterns=patterns)


# Prompts of a glob or folder row may name each file's own words: ``{caption}`` (the
# text of the same-name .txt beside the image, as captioning tools leave it) and
# ``{name}`` (the file's stem). Any other ``{word}`` is a problem; other braces are text.
TEMPLATED = ("prompt", "negative_prompt")
TEMPLATE_FIELDS = ("caption", "name")
_TEMPLATE = re.compile(r"\{(\w+)\}")


def _fill_templates(
    values: dict[str, Any], image: Path
) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    """The templated fields filled in for ``image``, and what stops that, as (field,
    value shown, why). A list of prompts (one task each) is filled item by item; the
    caption file is read once, when a field first names it."""
    filled: dict[str, Any] = {}
    stops: list[tuple[str, Any, str]] = []
    caption: tuple[str, str | None] | None = None
    for field in TEMPLATED:
        value = values.get(field)
        texts = value if isinstance(value, list) else [value]
        named = [n for t in texts if isinstance(t, str) for n in _TEMPLATE.findall(t)]
        unknown = [n for n in named if n not in TEMPLATE_FIELDS]
        if unknown:
            stops.append((field, value, _unknown_field(unknown[0])))
            continue
        if not named:
            continue
        words = {"name": image.stem}
        if "caption" in named:
            caption = caption or _caption(image)
            text, why = caption
            if why is not None:
                stops.append((field, _shown_name(image), why))
                continue
            words["caption"] = text
        done = [_filled(t, words) if isinstance(t, str) else t for t in texts]
        filled[field] = done if isinstance(value, list) else done[0]
    return filled, stops


def _unknown_field(name: str) -> str:
    close = difflib.get_close_matches(name, TEMPLATE_FIELDS, n=1)
    hint = f" (did you mean {{{close[0]}}}?)" if close else ""
    known = ", ".join("{" + n + "}" for n in TEMPLATE_FIELDS)
    return f"{{{name}}} is not a field a prompt can name{hint}: {known} are"


def _filled(text: str, words: dict[str, str]) -> str:
    return _TEMPLATE.sub(lambda match: words[match.group(1)], text)


def _caption(image: Path) -> tuple[str, str | None]:
    """The text of ``<stem>.txt`` beside ``image``, or why there is none."""
    beside = image.with_suffix(".txt")
    try:
        text = beside.read_text(encoding="utf-8-sig").strip()
    except FileNotFoundError:
        return "", f"{{caption}} needs {beside.name} beside the image, and there is none"
    except (OSError, UnicodeDecodeError) as exc:
        return "", f"{{caption}}: {beside.name} cannot be read as UTF-8 text ({exc})"
    if not text:
        return "", f"{{caption}}: {beside.name} is empty"
    return " ".join(text.split()), None


# An id from a file name keeps letters of any script (a CJK name must not become "_").
_NOT_IN_ID = re.compile(r"[^\w.-]+")


def _names_apart(base: Path, files: list[Path]) -> list[str]:
    """Each file's id part: its path under ``base`` without the suffix (``cat``,
    ``shot1_key``), or with it where two files would share one (``cat.png`` and
    ``cat.jpg``); compared without case, as macOS and Windows disks compare names."""
    stems = [_NOT_IN_ID.sub("_", str(f.relative_to(base).with_suffix(""))) for f in files]
    taken: dict[str, int] = {}
    for stem in stems:
        taken[stem.casefold()] = taken.get(stem.casefold(), 0) + 1
    return [
        _NOT_IN_ID.sub("_", str(f.relative_to(base))) if taken[stem.casefold()] > 1 else stem
        for f, stem in zip(files, stems, strict=True)
    ]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a byte the file system holds that is not UTF-8
        return False
    return True


def _shown_name(path: Path) -> str:
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _matches(base_dir: Path, image: str) -> tuple[Path, list[Path]] | None:
    """The fixed folder a pattern starts from and the image files it names, sorted;
    None for a single image. ``*`` may stand in any part, ``**`` for any depth."""
    if "://" in image or (not _GLOB.search(image) and image.lower().endswith(PICTURE_SUFFIXES)):
        return None  # a URL, or one picture: no need to ask the disk (a stat per row)
    path = Path(image).expanduser()
    # Absolute: the rows made here name their files whatever folder the command runs in.
    path = (path if path.is_absolute() else base_dir / path).absolute()
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES]
        base = path
    elif _GLOB.search(image):
        parts = path.parts
        fixed = next(i for i, part in enumerate(parts) if _GLOB.search(part))
        base = Path(*parts[:fixed])
        pattern = str(Path(*parts[fixed:]))
        found = [p for p in base.glob(pattern) if p.suffix.lower() in PICTURE_SUFFIXES]
    else:
        return None
    return base, sorted(p for p in found if p.is_file())
