"""Kafka header names autosteer adds to messages it forwards internally."""

ROUTED_MS = "autosteer-routed-ms"  # wall clock (epoch ms) when the router forwarded the frame
TIER = "autosteer-tier"  # "edge" or "cloud"
PRODUCED_MS = "autosteer-produced-ms"  # wall clock when the frame was put on the input topic
SHADOW = "autosteer-shadow"  # "1": an edge frame also sent to the cloud to measure agreement
