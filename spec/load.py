"""Read a spec from YAML, keeping the line of every key so problems can point at it.

Schema errors (a wrong type, an unknown field, a missing one) are collected, translated
into plain sentences with their YAML path and line, and raised together as one
:class:`SpecError`:

>>> text = '''
... application:
...   name: demo
...   operators:
...     - {name: detect, builds: [{latency_ms: 30}], tier: egde}
... resources:
...   nodes: [{name: n1, tier: edge, cpu: 2, memory_mb: 2048}]
... '''
>>> try:
...     parse_spec(text, origin="demo.yaml")
... except SpecError as exc:
...     print(exc.problems[0].located(exc.origin))
demo.yaml:5: application.operators[0].tier: got 'egde'; expected 'edge' or 'cloud'...
>>> parse_spec(text.replace("egde", "edge")).line("application.operators[0]")
5
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from autosteer.spec.errors import Problem, SpecError, did_you_mean
from autosteer.spec.model import Spec
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


def dotted(loc: Loc) -> str:
    """``('application', 'flows', 2, 'to')`` -> ``'application.flows[2].to'``.

    >>> dotted(("resources", "nodes", 0, "gpu", "kind"))
    'resources.nodes[0].gpu.kind'
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_spec(path: str | Path) -> Spec:
    """Read and schema-check the YAML spec at ``path``; raises :class:`SpecError`.

    Semantic checks (unknown operators in flows, capacity, SLO) are
    :func:`autosteer.spec.validate`'s job, so that all of them are reported together."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror or exc}",
                        origin=str(path)) from exc
    return parse_spec(text, origin=str(path))


def parse_spec(text: str, *, origin: str = "<spec>") -> Spec:
    """Like :func:`load_spec`, from YAML text."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = Problem("(yaml)", str(getattr(exc, "problem", None) or exc), line)
        raise SpecError(f"{origin} is not valid YAML", [problem], origin=origin) from exc
    lines: dict[str, int] = {}
    duplicates: list[Problem] = []
    if root is not None:
        _walk(root, (), lines, duplicates)
    if duplicates:
        raise SpecError(f"{origin} repeats keys", duplicates, origin=origin)
    return spec_from_data(data, origin=origin, lines=lines)


def spec_from_data(data: Any, *, origin: str = "<data>",
                   lines: Mapping[str, int] | None = None) -> Spec:
    """Build a :class:`Spec` from plain data (what YAML or JSON decode to)."""
    lines = dict(lines or {})
    if not isinstance(data, Mapping):
        got = "nothing" if data is None else type(data).__name__
        raise SpecError(f"{origin} must be a mapping with application, resources and sources; "
                        f"got {got}", origin=origin)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(err, lines) for err in exc.errors()]
        raise SpecError(f"{origin} does not match the spec schema "
                        f"({len(problems)} problem{'s' if len(problems) != 1 else ''})",
                        problems, origin=origin) from exc
    spec._lines = lines
    spec._origin = origin
    return spec


def line_of(lines: Mapping[str, int], loc: Loc) -> int | None:
    """Line of ``loc`` or of its nearest ancestor that is in the YAML."""
    for n in range(len(loc), -1, -1):
        line = lines.get(dotted(loc[:n]))
        if line is not None:
            return line
    return None


# --- YAML positions ------------------------------------------------------------------------
def _walk(node: yaml.Node, loc: Loc, lines: dict[str, int], dups: list[Problem]) -> None:
    lines.setdefault(dotted(loc), node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = loc + (key,)
            if key in seen:
                dups.append(Problem(dotted(here), f"key {key!r} appears twice",
                                    key_node.start_mark.line + 1))
            seen.add(key)
            lines[dotted(here)] = key_node.start_mark.line + 1
            _walk(value_node, here, lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, loc + (i,), lines, dups)


# --- pydantic errors -> sentences -----------------------------------------------------------
def _problem(err: Mapping[str, Any], lines: Mapping[str, int]) -> Problem:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        message = f"unknown field {key!r}{did_you_mean(key, _fields_at(loc[:-1]))}"
    elif kind == "missing":
        message = f"missing required field {loc[-1]!r}"
    elif kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        message = f"got {value!r}; expected {expected}{did_you_mean(str(value), choices)}"
    elif kind == "string_pattern_mismatch" and loc and _is_name(loc):
        message = (f"{value!r} is not a valid name: use lowercase letters, digits, "
                   "'.', '_' and '-', starting with a letter or digit")
    else:
        message = f"{err['msg'][:1].lower()}{err['msg'][1:]}; got {_short(value)}"
    return Problem(dotted(loc), message, line_of(lines, loc))


def _is_name(loc: Loc) -> bool:
    last = loc[-1] if not isinstance(loc[-1], int) else loc[-2]
    return last in ("name", "id", "node", "operator", "from", "to", "between")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(loc: Loc) -> list[str]:
    """Field names (aliases where set) allowed at ``loc`` in :class:`Spec`."""
    model: type[BaseModel] | None = Spec
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
