"""Read specs from YAML or JSON files, turning every failure into a one-line `SpecError`.

Both formats are read to the same values: numbers, booleans and null as JSON reads them, and a key given
twice in one mapping is refused (JSON and YAML would silently keep the last). YAML's plain scalars that
YAML 1.1 reads otherwise (`010` octal, `1:30` base 60, `1_000`, `yes`/`no`/`on`/`off`) are refused rather
than read one way or the other: quoting them makes them text (docs/workloads.md, "How files are read").
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from embmap.ir.errors import SpecError
from embmap.ir.printer import printable

MAX_SPEC_BYTES = 16 * 1024 * 1024
Model = TypeVar("Model", bound=BaseModel)
REPEATED_KEY_FIX = "keep one of them: otherwise the last would silently win"

# YAML: one rule for plain scalars ------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
AMBIGUOUS_TAG = "tag:embmap,2026:ambiguous"  # a plain scalar YAML 1.1 reads otherwise than JSON: refused
_JSON_INT = r"[-+]?(?:0|[1-9][0-9]*)"
_EXPONENT = r"(?:[eE][-+]?[0-9]+)?"
_RESOLVERS: tuple[tuple[str, str, str], ...] = (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", _JSON_INT, "-+0123456789"),
    (
        "float",
        rf"{_JSON_INT}(?:\.[0-9]*)?{_EXPONENT}|[-+]?\.[0-9]+{_EXPONENT}|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
    ("null", r"~|null|Null|NULL|", "~nN"),
    ("merge", r"<<", "<"),
)
_YAML11_VALUE_TAGS = frozenset(_TAG + kind for kind in ("bool", "int", "float"))
_JSON_TAGS = frozenset(_TAG + kind for kind in ("null", "bool", "int", "float", "str", "seq", "map"))


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with JSON's reading of plain scalars and no repeated keys.

    A plain scalar is a number where JSON would read one (`16`, `-3`, `1.5`, `1e6`, `1.5e-3`; also a leading
    `+`, `.5`, `1.` and YAML's `.inf` and `.nan`), a boolean only as `true` or `false`, null as `null`, `~` or
    nothing; everything else is text, except what YAML 1.1 (PyYAML's own resolver) reads as a number or a
    boolean: `010`, `0x10`, `1_000`, `1:30`, `yes`, `off`, ... are refused, naming where they are. Only the
    JSON types are built (no timestamps, sets or binary)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}  # not PyYAML's YAML 1.1 ones
    yaml_constructors: ClassVar[dict[Any, Any]] = {
        tag: fn for tag, fn in yaml.SafeLoader.yaml_constructors.items() if tag is None or tag in _JSON_TAGS
    }

    what = "document"
    paths: dict[int, str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        tag: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        if kind is ScalarNode and implicit[0]:
            old = _yaml11_tag(value)
            if old in _YAML11_VALUE_TAGS and old != tag:
                return AMBIGUOUS_TAG
        return tag

    def construct_document(self, node: Node) -> Any:
        self.paths = _node_paths(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, MappingNode):  # else the base class says what is wrong
            self._refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_repeated_keys(self, node: MappingNode) -> None:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _TAG + "merge":
                continue  # a complex key is refused by the constructor; merged keys may be overridden
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in lines:
                on = f"on line {line}" if lines[key] == line else f"on lines {lines[key]} and {line}"
                raise SpecError(
                    self.what,
                    f"{_where(self.paths.get(id(node), ''))} has the key {printable(repr(key))} twice ({on})",
                    REPEATED_KEY_FIX,
                )
            lines[key] = line

    def construct_ambiguous(self, node: ScalarNode) -> Any:
        reading = yaml.safe_load(node.value)
        shown = printable(node.value)
        written = (
            "true or false" if isinstance(reading, bool) else "the number in decimal, without a leading 0, '_' or ':'"
        )
        raise SpecError(
            self.what,
            f"{self.paths.get(id(node)) or 'the document'} is {shown} (line {node.start_mark.line + 1}), which YAML 1.1 "
            f"reads as {json.dumps(reading)} and JSON does not read at all",
            f'write {written}, or quote it ("{shown}") for text',
        )


for _kind, _regexp, _first in _RESOLVERS:
    StrictLoader.add_implicit_resolver(
        _TAG + _kind, re.compile(f"^(?:{_regexp})$"), [*_first] + ([""] if _kind == "null" else [])
    )
StrictLoader.add_constructor(AMBIGUOUS_TAG, StrictLoader.construct_ambiguous)


def _yaml11_tag(value: str) -> str | None:
    """The tag PyYAML's YAML 1.1 resolver gives a plain scalar, or None for text."""
    for tag, regexp in yaml.SafeLoader.yaml_implicit_resolvers.get(value[:1], []):
        if regexp.match(value):
            return str(tag)
    return None


def _node_paths(root: Node) -> dict[int, str]:
    """Every node's place in the document as a field path (`tables[2].rows`), keyed by the node's id."""
    paths = {id(root): ""}
    stack = [root]
    while stack:
        node = stack.pop()
        base = paths[id(node)]
        children: list[tuple[str, Node]] = []
        if isinstance(node, MappingNode):
            for key, value in node.value:
                name = str(key.value) if isinstance(key, ScalarNode) else "?"
                children += [(base, key), (f"{base}.{name}" if base else name, value)]
        elif isinstance(node, SequenceNode):
            children = [(f"{base}[{i}]", v) for i, v in enumerate(node.value)]
        for path, child in children:
            if id(child) not in paths:  # an alias keeps the place of its anchor
                paths[id(child)] = printable(path)
                stack.append(child)
    return paths


def _where(path: str) -> str:
    return path or "the top level"


def load_yaml(text: str, what: str) -> Any:
    """A YAML document as JSON would read it (`StrictLoader`); errors name `what` and the place."""
    loader = StrictLoader(text)
    loader.what = what
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# JSON ----------------------------------------------------------------------------------------------------


class _RepeatedKeys(dict[str, Any]):
    """An object of a JSON document that gives a key twice (the key in `repeated`)."""

    repeated: str = ""


def _first_twice(items: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            return key
        seen.add(key)
    return ""


def load_json(text: str, what: str) -> Any:
    """A JSON document, refusing an object that gives a key twice; errors name `what` and the object's path."""
    repeated: list[_RepeatedKeys] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        marked = _RepeatedKeys(obj)
        marked.repeated = _first_twice(items)
        repeated.append(marked)
        return marked

    data = json.loads(text, object_pairs_hook=pairs)
    if repeated:
        path, obj = _first_repeated(data)
        raise SpecError(what, f"{_where(path)} has the key {printable(repr(obj.repeated))} twice", REPEATED_KEY_FIX)
    return data


def _first_repeated(data: Any) -> tuple[str, _RepeatedKeys]:
    """The first object in document order that repeats a key, with its path."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _RepeatedKeys):
            return printable(path), value
        if isinstance(value, dict):
            stack += reversed([(f"{path}.{k}" if path else str(k), v) for k, v in value.items()])
        elif isinstance(value, list):
            stack += reversed([(f"{path}[{i}]", v) for i, v in enumerate(value)])
    raise AssertionError("a repeated key was marked but not found")


def read_document(path: Path, what: str) -> dict[str, Any]:
    """Parse a YAML or JSON file (by suffix; YAML otherwise, which also reads JSON) into a mapping."""
    if not path.is_file():
        raise SpecError(what, f"no such file {str(path)!r}", f"give an existing path or a built-in {what} name")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(what, f"{path} is {size} bytes, more than the {MAX_SPEC_BYTES} allowed", "split the file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(what, f"cannot read {path}: {exc}", "give a UTF-8 text file") from None
    return parse_document(text, path.suffix.lower() == ".json", f"{what} {path.name}")


def parse_document(text: str, is_json: bool, what: str) -> dict[str, Any]:
    try:
        data = load_json(text, what) if is_json else load_yaml(text, what)
    except json.JSONDecodeError as exc:
        raise SpecError(
            what, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", "fix the syntax"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise SpecError(what, f"not valid YAML{where}: {problem}", "fix the syntax") from None
    except RecursionError:
        raise SpecError(what, "nested too deeply", "flatten the document") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SpecError(what, f"has a value that cannot be read: {str(exc)[:80]}", "write plain numbers") from None
    if not isinstance(data, dict):
        raise SpecError(
            what, f"must be a mapping of fields, got {type(data).__name__}", "start the file with `name: ...`"
        )
    return data


def validate(model: type[Model], data: Any, what: str) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from(exc, what) from None
    except RecursionError:
        raise SpecError(what, "nested too deeply", "flatten the document") from None


def spec_error_from(exc: ValidationError, what: str) -> SpecError:
    """The first validation error as one line: the field path, what is wrong, and how to fix it."""
    err = exc.errors(include_url=False)[0]
    loc = _format_loc(err.get("loc", ()))
    if err.get("type") == "number_type":  # raised for the whole model, about one of its fields
        loc = f"{loc}.{err['ctx']['field']}" if loc else err["ctx"]["field"]
    field = f"{what}.{loc}" if loc else what
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    got = err.get("input")
    fixes = {
        "extra_forbidden": "remove it or check its spelling",
        "missing": "add this field",
        "greater_than": "use a larger, positive value",
        "greater_than_equal": "use a larger value",
        "less_than": "use a smaller value",
        "less_than_equal": "use a smaller value",
        "int_parsing": "give a whole number",
        "int_from_float": "give a whole number",
        "float_parsing": "give a number",
        "enum": "use one of the allowed values",
        "literal_error": "use one of the allowed values",
        "union_tag_invalid": "use kind uniform, zipf, hot-set or empirical",
        "string_pattern_mismatch": "use letters, digits, '_', '.' or '-'",
        "int_type": "give a whole number",
        "int_parsing_size": "give a whole number in the allowed range",
        "float_type": "give a number",
        "finite_number": "give a finite number",
        "bool_type": "give true or false",
        "bool_parsing": "give true or false",
        "string_type": "give a text string",
        "string_too_short": "give a non-empty text",
        "string_too_long": "give a shorter text",
        "too_short": "give at least one entry",
        "too_long": "give fewer entries",
        "tuple_type": "give a list",
        "list_type": "give a list",
        "dict_type": "give a mapping of fields",
        "model_type": "give a mapping of fields",
        "model_attributes_type": "give a mapping of fields",
        "union_tag_not_found": "add `kind: uniform`, `kind: zipf`, `kind: hot-set` or `kind: empirical`",
        "number_type": "write a plain number, e.g. 16 (no quotes, not true or false)",
        "memory_too_large": "give the memory's capacity in bytes",
        "cost_too_large": "give seconds per access or per item, each under a second",
        "value_error": "correct the value",
        "duplicate_name": "give each table a unique name",
        "histogram_rows": "set rows to the sum of the counts, or profile the trace with the table's rows (--tables)",
    }
    if kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")  # our validators' own messages say what to do
    elif kind not in ("missing",) and got is not None and not isinstance(got, dict | list):
        shown = repr(got)
        msg = f"{msg}, got {shown[:60]}"
    fix = fixes.get(kind, "see the field's description in docs/plan-format.md and the README")
    return SpecError(field, msg[0].lower() + msg[1:] if msg else msg, fix)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("uniform", "zipf", "hot-set", "empirical") and out:
            continue  # pydantic's discriminator tag; not a field the user wrote
        else:
            out += ("." if out else "") + str(part)
    return out
