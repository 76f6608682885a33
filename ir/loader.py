"""Read specs from YAML or JSON files, turning every failure into a one-line `SpecError`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from embmap.ir.errors import SpecError

MAX_SPEC_BYTES = 16 * 1024 * 1024
Model = TypeVar("Model", bound=BaseModel)


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
        data = json.loads(text) if is_json else yaml.safe_load(text)
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
        "union_tag_invalid": "use kind uniform, zipf or hot-set",
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
        "union_tag_not_found": "add `kind: uniform`, `kind: zipf` or `kind: hot-set`",
        "number_type": "write a plain number, e.g. 16 (no quotes, not true or false)",
        "memory_too_large": "give the memory's capacity in bytes",
        "cost_too_large": "give seconds per access or per item, each under a second",
        "value_error": "correct the value",
        "duplicate_name": "give each table a unique name",
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
        elif part in ("uniform", "zipf", "hot-set") and out:
            continue  # pydantic's discriminator tag; not a field the user wrote
        else:
            out += ("." if out else "") + str(part)
    return out


def check_writable(path: Path, field: str = "output") -> Path:
    """`path` can be written as a file: it is not a directory and its directory exists. Returns the directory."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(field, f"{path} is a directory", "give a file path, e.g. -o plan.json")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError(field, f"directory {parent} does not exist", "create it first or choose another path")
    return parent


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    parent = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would surprise whoever reads the file next
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
