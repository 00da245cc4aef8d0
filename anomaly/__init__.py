"""Anomaly and drift detection over telemetry (see issues 5 and 6; not built yet)."""
