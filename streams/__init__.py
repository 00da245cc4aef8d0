"""Streams: the Faust app, its agents, the CLI and the demo."""
