"""Reading YAML files safely, with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from studies.errors import UserError


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    if data is None:
        raise UserError(f"{path}: the file is empty, expected a mapping of keys")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, found {type(data).__name__}")
    return data
