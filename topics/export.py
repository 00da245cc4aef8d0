"""Write the JSON Schema of every public record to ``topics/schemas/<topic>.json``.

Run ``python -m autosteer.topics.export`` after changing a record; a test fails when
the committed files differ from what the records generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autosteer.topics.catalog import PUBLIC_RECORDS

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for topic, record in PUBLIC_RECORDS.items():
        schema = record.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"autosteer/{topic}.json"
        out[topic] = schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for topic, schema in schemas().items():
        (SCHEMA_DIR / f"{topic}.json").write_text(render(schema))
        print(f"wrote {SCHEMA_DIR / (topic + '.json')}")


if __name__ == "__main__":
    main()
