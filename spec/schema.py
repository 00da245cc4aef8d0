"""The spec's JSON Schema, generated from the pydantic models.

Run ``python -m autosteer.spec.schema`` after changing :mod:`autosteer.spec.model`; a
test fails when the committed ``spec/schema.json`` differs from what the models give.

>>> schema = json_schema()
>>> schema["$id"], sorted(schema["required"])
('autosteer/spec.json', ['application', 'resources'])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autosteer.spec.model import Spec

SCHEMA_PATH = Path(__file__).parent / "schema.json"


def json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "autosteer/spec.json"
    schema["title"] = "autosteer deployment spec"
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(render(json_schema()))
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
