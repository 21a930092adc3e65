"""Bounded YAML and typed fields with one-line errors, for every file a user writes (sweep and
study files): ``read_yaml``/``parse_yaml`` bound size, nesting and alias expansion, so a
hostile or broken file fails with one line instead of eating memory; ``parse_fields`` turns a
pydantic model's first error into a ``UserError`` naming the field (and, for an unknown field,
the allowed ones)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from raytune_hpo.errors import SpecError, UserError, did_you_mean

MAX_YAML_BYTES = 1 << 20  # a sweep or study file is a few kB
MAX_YAML_NODES = 100_000  # values after alias expansion
MAX_YAML_DEPTH = 32


# ---------------------------------------------------------------------- YAML, bounded
class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-5`` as a number (YAML 1.2), as users write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> data, bounded in size, nesting depth and expanded size."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise SpecError(f"larger than {MAX_YAML_BYTES // 1024} kB; not a sweep file", source=source)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"not valid YAML{where}", source=source) from None
    except RecursionError:
        raise SpecError(f"nested deeper than {MAX_YAML_DEPTH} levels", source=source) from None
    _check_bounds(data, source)
    return data


def _check_bounds(data: Any, source: str) -> None:
    """Walk the data as code will (aliases expanded) and stop at the first bound crossed."""
    stack = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_YAML_NODES:
            raise SpecError(
                f"more than {MAX_YAML_NODES} values once aliases are expanded (a YAML alias bomb?)",
                source=source,
            )
        if depth > MAX_YAML_DEPTH:
            raise SpecError(f"nested deeper than {MAX_YAML_DEPTH} levels", source=source)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node if not isinstance(k, str))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def read_yaml(path: str | os.PathLike[str], *, what: str = "sweep") -> dict[str, Any]:
    """A YAML file that must hold a mapping of fields."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError(f"{what} file does not exist", source=str(path))
    if p.stat().st_size > MAX_YAML_BYTES:
        raise SpecError(
            f"larger than {MAX_YAML_BYTES // 1024} kB; not a {what} file", source=str(path)
        )
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise SpecError("not a text file", source=str(path)) from None
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError(f"the {what} file must be a YAML mapping of fields", source=str(path))
    return data


def parse_fields(model: type[BaseModel], data: Any, *, prefix: str = "") -> Any:
    """``model.model_validate(data)``; a UserError naming the field of the first error
    (``prefix``: where the data sits in the file)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise first_error(e, model, prefix) from None


def validate(model: type[BaseModel], data: Any, source: str, *, prefix: str = "") -> Any:
    """``parse_fields`` for a whole file: a SpecError that names the file too."""
    try:
        return parse_fields(model, data, prefix=prefix)
    except UserError as e:
        raise e.as_spec_error(source) from None


def first_error(e: ValidationError, model: type[BaseModel], prefix: str = "") -> UserError:
    """The first error pydantic found, as a UserError naming its field."""
    err = e.errors()[0]
    field = ((prefix,) if prefix else ()) + tuple(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        allowed = fields_at(model, err["loc"][:-1])
        hint = did_you_mean(err["loc"][-1], allowed)
        return UserError(f"unknown field; allowed: {', '.join(allowed)}{hint}", field=field)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error":  # a misspelt choice: the nearest allowed one
        expected = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        msg += did_you_mean(err.get("input"), expected)
    return UserError(msg, field=field or ("sweep",))


def fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = [
    "MAX_YAML_BYTES",
    "Strict",
    "fields_at",
    "first_error",
    "parse_fields",
    "parse_yaml",
    "read_yaml",
    "validate",
]
