"""The committed JSON Schema of the spec is what the models generate."""

from __future__ import annotations

from autosteer.spec.schema import SCHEMA_PATH, json_schema, render


def test_committed_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == render(json_schema()), (
        "spec/schema.json is stale: run python -m autosteer.spec.schema")


def test_schema_names_the_flow_fields_as_written_in_yaml() -> None:
    flow = json_schema()["$defs"]["Flow"]
    assert {"from", "to", "kind"} <= set(flow["properties"])
    assert flow["additionalProperties"] is False
