"""The ``autosteer`` command line (click, like Faust's own CLI).

    autosteer infra up|down|status      local broker, ClickHouse and RTSP camera
    autosteer models prepare            convert + quantize the detectors (cached)
    autosteer worker                    run the Faust worker (AUTOSTEER_ROLES picks agents)
    autosteer camera add URL --id cam1  start ingest of an RTSP stream or video file
    autosteer camera remove cam1
    autosteer sql "SELECT ..."          query telemetry (server, or embedded via the worker)
    autosteer report --minutes 30       HTML charts of latency, throughput, offload ratio
    autosteer topics create|schemas
    autosteer plan SPEC                 check a YAML spec, place its operators, print commands
    autosteer deploy SPEC               start the planned workers here, register cameras
    autosteer demo                      everything above, for a minute, on vtest.avi
    autosteer demo --drift              the closed loop: night falls, the edge model adapts
    autosteer testbed ...               edge/cloud hosts on one machine (infra/testbed_cli.py)

One module per topic: :mod:`.setup` (infra, models, topics), :mod:`.run` (worker,
camera, demo), :mod:`.telemetry` (sql, report), :mod:`.deploy` (plan, deploy);
:mod:`.output` prints; :mod:`.app` is the root group. Every setting comes from
``AUTOSTEER_*`` environment variables (see docs/settings.md).
"""

from __future__ import annotations

from autosteer.streams.cli.app import main
from autosteer.streams.cli.deploy import deploy, plan_cmd
from autosteer.streams.cli.run import camera, demo, worker
from autosteer.streams.cli.setup import infra, models, topics
from autosteer.streams.cli.telemetry import report, sql


def _mount_testbed() -> None:
    from autosteer.infra.testbed_cli import testbed

    main.add_command(testbed)


_mount_testbed()
for _command in (infra, models, worker, camera, sql, report, plan_cmd, deploy, topics, demo):
    main.add_command(_command)

__all__ = ["main"]
