from __future__ import annotations

import pytest
from autosteer.settings import Settings
from pydantic import ValidationError


def test_reads_prefixed_environment() -> None:
    s = Settings.from_env({"AUTOSTEER_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
                           "AUTOSTEER_EDGE_RATIO": "0.3", "AUTOSTEER_STORE": "embedded",
                           "UNRELATED": "x"})
    assert s.kafka_bootstrap == "k1:9092,k2:9092" and s.edge_ratio == 0.3 and s.store == "embedded"


def test_sasl_passes_through_and_secret_is_masked() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="u", kafka_sasl_password="p4ss")
    conf = s.confluent_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "p4ss"
    assert "p4ss" not in repr(s) and "p4ss" not in str(s.model_dump())


@pytest.mark.parametrize(("key", "value"), [("AUTOSTEER_EDGE_RATIO", "1.5"),
                                            ("AUTOSTEER_STORE", "mysql"),
                                            ("AUTOSTEER_TOPIC_PREFIX", "bad prefix")])
def test_invalid_values_are_rejected(key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env({key: value})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.edge_ratio = 0.1  # type: ignore[misc]
