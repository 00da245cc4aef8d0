"""``autosteer testbed up|down|status|set|measure``: edge and cloud as separate hosts.

The group is mounted on the main CLI with ``main.add_command(testbed)``; it also runs
on its own: ``python -m autosteer.infra.testbed_cli up``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import click
from autosteer.errors import AutosteerError
from autosteer.infra.testbed import HostSpec, LinkSpec, Testbed


class _Group(click.Group):
    """Our errors as a one-line message (as the main CLI does), also when run alone."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutosteerError as exc:
            raise click.ClickException(str(exc)) from exc

_LINK_OPTIONS = (
    click.option("--rate-mbps", type=float, help="link rate, Mbit/s, each direction"),
    click.option("--delay-ms", type=float, help="one-way delay, ms (RTT = 2x)"),
    click.option("--jitter-ms", type=float, help="mean extra delay (exponential), ms"),
    click.option("--loss", type=float, help="share of packets dropped at random, 0..1"),
    click.option("--queue-ms", type=float, help="queue before drops, in time at the rate"),
)


def _link_options(f: Any) -> Any:
    for opt in reversed(_LINK_OPTIONS):
        f = opt(f)
    return f


def _link_update(opts: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in opts.items() if k in {f.name for f in dataclasses.fields(LinkSpec)}
            and v is not None}


@click.group(cls=_Group)
@click.option("--prefix", default="as", show_default=True,
              help="names of this testbed's namespaces, cgroups and devices start with it")
@click.pass_context
def testbed(ctx: click.Context, prefix: str) -> None:
    """Edge and cloud as two hosts on this machine (root): namespaces, CPU budgets, a WAN."""
    ctx.obj = prefix


@testbed.command("up")
@click.option("--edge-cpu", type=float, default=0.5, show_default=True,
              help="edge CPU budget, cores (CFS quota)")
@click.option("--edge-cpus", default="0", show_default=True, help="edge cpuset")
@click.option("--cloud-cpu", type=float, default=0.0, show_default=True,
              help="cloud CPU budget, cores (0: no quota)")
@click.option("--cloud-cpus", default="1", show_default=True, help="cloud cpuset")
@click.option("--broker-port", type=int, default=19092, show_default=True)
@_link_options
@click.pass_obj
def testbed_up(prefix: str, edge_cpu: float, edge_cpus: str, cloud_cpu: float,
               cloud_cpus: str, broker_port: int, **link: Any) -> None:
    """Make the hosts, the link and the broker (idempotent)."""
    tb = Testbed(prefix, edge=HostSpec(edge_cpus, edge_cpu if edge_cpu > 0 else None),
                 cloud=HostSpec(cloud_cpus, cloud_cpu if cloud_cpu > 0 else None),
                 link=dataclasses.replace(LinkSpec(), **_link_update(link)),
                 broker_port=broker_port)
    tb.up()
    click.echo(json.dumps(tb.status(), indent=1))
    click.echo(f"broker: AUTOSTEER_KAFKA_BOOTSTRAP={tb.bootstrap}")


@testbed.command("down")
@click.pass_obj
def testbed_down(prefix: str) -> None:
    """Remove everything `testbed up` made, and every process left on its hosts."""
    removed = Testbed(prefix).down()
    click.echo("\n".join(removed) if removed else "nothing to remove")


@testbed.command("status")
@click.pass_obj
def testbed_status(prefix: str) -> None:
    """Hosts, budgets, link settings and link counters, as JSON."""
    click.echo(json.dumps(Testbed(prefix).status(), indent=1))


@testbed.command("set")
@click.option("--edge-cpu", type=float, help="edge CPU budget, cores (0: no quota)")
@click.option("--cloud-cpu", type=float, help="cloud CPU budget, cores (0: no quota)")
@click.option("--direction", type=click.Choice(["both", "up", "down"]), default="both",
              show_default=True, help="which direction the link options change")
@_link_options
@click.pass_obj
def testbed_set(prefix: str, edge_cpu: float | None, cloud_cpu: float | None,
                direction: str, **link: Any) -> None:
    """Change CPU budgets or the link now (unnamed link options keep their values)."""
    tb = Testbed(prefix)
    update = _link_update(link)
    up, down = tb.link_specs()
    tb.set(edge_cpu=edge_cpu, cloud_cpu=cloud_cpu,
           up=dataclasses.replace(up, **update) if update and direction != "down" else None,
           down=dataclasses.replace(down, **update) if update and direction != "up" else None)
    click.echo(json.dumps({k: tb.status()[k] for k in ("cpu", "link")}, indent=1))


@testbed.command("measure")
@click.option("--seconds", type=float, default=5.0, show_default=True)
@click.pass_obj
def testbed_measure(prefix: str, seconds: float) -> None:
    """Ping RTT and iperf3 TCP throughput across the link, both directions."""
    tb = Testbed(prefix)
    tb.link_specs()  # says so when the testbed is not up
    c0 = tb.proc_cpu_s("linkemu")
    t0 = time.monotonic()
    out = {"rtt_ms": tb.ping(), "up_mbps": round(tb.throughput_mbps(seconds), 2),
           "down_mbps": round(tb.throughput_mbps(seconds, reverse=True), 2)}
    out["linkemu_cpu_share"] = round((tb.proc_cpu_s("linkemu") - c0)
                                     / (time.monotonic() - t0), 3)
    click.echo(json.dumps(out))


if __name__ == "__main__":
    testbed()
