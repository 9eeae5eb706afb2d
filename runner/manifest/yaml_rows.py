"""A YAML manifest read into rows, and what YAML reads differently from what a person
wrote said where it is: ``on:`` and ``16:9`` as keys, a key given twice, an alias
that expands to a billion values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from runner.core.errors import ManifestError
from runner.manifest.rows import SEXAGESIMAL, Manifest, Problem, Row

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
            raise ManifestError([Problem(file=name, rule=problem)])
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


def load_yaml(path: Path, text: str, overrides: dict[str, Any]) -> Manifest:
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
            raise ManifestError([Problem(file=name, line=1, rule=rule)])
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ManifestError(
                [Problem(file=name, field="defaults", rule="must be a mapping of field: value")]
            )
        prices = data.get("prices") or {}
        if not isinstance(prices, dict):
            raise ManifestError(
                [Problem(file=name, field="prices", rule="must be a mapping of tier: USD")]
            )
        data = data["rows"]
        rows_node = _child(root, "rows")
    if not isinstance(data, list):
        raise ManifestError(
            [Problem(file=name, line=1, rule="must be a list of rows, or defaults + rows")]
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
                    file=name,
                    row=str(number),
                    line=line,
                    rule="a row must be a mapping of field: value",
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


def text_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
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
        file=name, line=mark.line + 1 if mark else None, rule=f"is not valid YAML: {detail}"
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
                        file=name,
                        line=line,
                        field=str(shown),
                        rule="a field name must be text: "
                        f"YAML reads {shown} as a {key.tag.rsplit(':', 1)[-1]}; quote it",
                    )
                )
                continue
            if key.value in seen:
                problems.append(
                    Problem(
                        file=name,
                        line=line,
                        field=key.value,
                        rule=f"is given twice in one mapping (first at line {seen[key.value]}); "
                        "YAML would silently keep the last",
                    )
                )
            seen.setdefault(key.value, line)
            if key.value in ratios:
                problems.append(
                    Problem(
                        file=name,
                        line=value.start_mark.line + 1,
                        field=key.value,
                        value=value.value,
                        rule=f'YAML reads it unquoted as a number; write "{value.value}" in quotes',
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
    return {k: v for k, v in text_keys(mapping).items() if k not in dropped}


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
