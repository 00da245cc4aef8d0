"""Edge and cloud as two hosts on this machine: network namespaces, CPU budgets, a WAN.

``Testbed.up()`` makes (as root; idempotent):

- two network namespaces, ``<prefix>-edge`` and ``<prefix>-cloud``;
- per host a cgroup v1 group in the ``cpu``, ``cpuset`` and ``cpuacct`` hierarchies:
  the edge gets a share of CPU 0 (CFS quota, 50% by default), the cloud CPU 1 with no
  quota; ``cpu.shares`` is high on both, so unconfined processes on the machine do not
  eat into the budgets;
- the link: ``linkemu`` (``infra/linkemu.c``, compiled once into the cache) creates one
  tun device in each namespace and carries every packet between them, holding it for
  its one-way delay plus jitter behind a rate-limited, drop-when-full FIFO per
  direction, with random loss; it runs at real-time priority (``chrt -f 10``);
- the broker (tansu) in the cloud namespace, listening on and advertising the cloud's
  link address, so every Kafka byte of the edge host crosses the link
  (``broker_host="edge"`` puts it on the edge host instead, inside its CPU budget: then
  only the cloud's Kafka bytes cross).

Everything it made is written to a state file; ``down()`` removes exactly that (the
namespaces by inode, the processes by pid and start time, the cgroups by path), and
every process left in the groups or namespaces. Budgets and the link change at run time
with ``set()``. Without root there is no testbed: the router's emulated link
(``AUTOSTEER_LINK_MBPS`` / ``_DELAY_MS`` / ``_JITTER_MS``) is the fallback.

Workers go onto a host with ``Testbed.worker(settings, "edge", log)``: the process is
born in the host's cgroups and namespace. ``with tb.netns("edge"):`` puts the calling
thread (and the sockets and threads it creates, such as librdkafka's) on a host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autosteer.errors import InfraError
from autosteer.infra.process import in_netns

log = logging.getLogger(__name__)

HOSTS = ("edge", "cloud")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuset", "cpuacct")
CFS_PERIOD_US = 100_000
SHARES = 10240
SOURCE = Path(__file__).resolve().parent / "linkemu.c"
FALLBACK = ("without root the testbed cannot be made; the router's emulated link is the "
            "fallback: set AUTOSTEER_LINK_MBPS, AUTOSTEER_LINK_DELAY_MS and "
            "AUTOSTEER_LINK_JITTER_MS")


def _cache() -> Path:
    return Path.home() / ".cache" / "autosteer"


@dataclass(frozen=True)
class LinkSpec:
    """One direction of the link. ``queue_ms``: how much the wire may have waiting, in
    time at ``rate_mbps``, before packets are dropped (at least 64 KB).

    >>> LinkSpec(20, 20, 1).config_line("up")
    'up 20000000 20000 1000 0 125000'
    """

    rate_mbps: float = 20.0
    delay_ms: float = 20.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    queue_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.rate_mbps < 0 or self.delay_ms < 0 or self.jitter_ms < 0 or self.queue_ms < 0 \
                or not 0 <= self.loss <= 1:
            raise InfraError(f"link needs rate, delay, jitter, queue >= 0 and 0 <= loss <= 1; "
                             f"got {self}")

    @property
    def queue_bytes(self) -> int:
        return max(65536, int(self.rate_mbps * 1e6 / 8 * self.queue_ms / 1000))

    def config_line(self, direction: str) -> str:
        return (f"{direction} {int(self.rate_mbps * 1e6)} {int(self.delay_ms * 1000)} "
                f"{int(self.jitter_ms * 1000)} {int(self.loss * 1e6)} {self.queue_bytes}")


@dataclass(frozen=True)
class HostSpec:
    """A host's CPU budget: the cpuset and a CFS quota in cores (None: no quota)."""

    cpus: str
    cores: float | None

    def quota_us(self) -> int:
        return -1 if self.cores is None else max(1000, int(self.cores * CFS_PERIOD_US))


# -- namespaces: in_netns lives in infra/process.py (workers use it too) -----------------


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise InfraError(f"{' '.join(argv)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a pid from its reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start: int | None) -> bool:
    return start is not None and _start_time(pid) == start


def _kill(pid: int, start: int | None, timeout_s: float = 10.0) -> None:
    """SIGTERM the process (if it is still the one we started), SIGKILL after a while."""
    if not _alive(pid, start):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid, start) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        _zombie_gone = Path(f"/proc/{pid}/stat")
        if _zombie_gone.exists() and _zombie_gone.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    if _alive(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def linkemu_binary() -> Path:
    """``infra/linkemu.c`` compiled with gcc into the cache (once per source version)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = _cache() / "bin" / f"linkemu-{digest}"
    if out.exists():
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise InfraError("the testbed's link emulator is C: install gcc (apt-get install gcc)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    _run(gcc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE), "-lm")
    tmp.rename(out)
    return out


# -- the testbed ----------------------------------------------------------------------------
class Testbed:
    """Edge and cloud hosts on this machine. Names start with ``prefix`` (at most 8
    characters), so several testbeds can exist side by side; ``subnet`` holds the link's
    two addresses (``.1`` edge, ``.2`` cloud)."""

    __test__ = False  # not a pytest class

    def __init__(self, prefix: str = "as", *, state_dir: Path | None = None,
                 edge: HostSpec = HostSpec("0", 0.5), cloud: HostSpec = HostSpec("1", None),
                 link: LinkSpec = LinkSpec(), broker_port: int = 19092,
                 subnet: str = "10.77.0", broker_host: str = "cloud") -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise InfraError(f"testbed prefix must be 1-8 lower-case letters/digits; got "
                             f"{prefix!r}")
        self.prefix = prefix
        self.state_dir = state_dir or _cache() / "testbed"
        self.edge = edge
        self.cloud = cloud
        self.link = link
        self.broker_port = broker_port
        self.subnet = subnet
        self._check_host(broker_host)
        self.broker_host = broker_host

    def __repr__(self) -> str:
        return f"Testbed(prefix={self.prefix!r}, link={self.link}, edge={self.edge}, " \
               f"cloud={self.cloud})"

    # names ---------------------------------------------------------------------------------
    def ns(self, host: str) -> str:
        self._check_host(host)
        return f"{self.prefix}-{host}"

    def addr(self, host: str) -> str:
        return f"{self.subnet}.{1 if host == 'edge' else 2}"

    def tun(self, host: str) -> str:
        return f"{self.prefix}-tun-{host[0]}"

    def cgroup(self, controller: str, host: str) -> Path:
        return CGROUP_ROOT / controller / self.ns(host)

    @property
    def bootstrap(self) -> str:
        """The broker as every host reaches it: its host's link address (the cloud's by
        default)."""
        return f"{self.addr(self.broker_host)}:{self.broker_port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.prefix}.json"

    def _file(self, name: str) -> Path:
        return self.state_dir / f"{self.prefix}.{name}"

    @staticmethod
    def _check_host(host: str) -> None:
        if host not in HOSTS:
            raise InfraError(f"host must be one of {HOSTS}; got {host!r}")

    # state ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise InfraError(f"testbed state {self.state_file} is not JSON: {exc}") from exc

    def _save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.rename(self.state_file)

    @staticmethod
    def require_root() -> None:
        if os.geteuid() != 0:
            raise InfraError(f"the testbed needs root (network namespaces, tun devices, "
                             f"cgroups); {FALLBACK}")

    def is_up(self) -> bool:
        st = self._load()
        if not st.get("complete"):
            return False
        for host in HOSTS:
            try:
                if os.stat(f"/run/netns/{self.ns(host)}").st_ino != st["netns"][host]:
                    return False
            except OSError:
                return False
        return all(_alive(p["pid"], p["start"]) for p in st["procs"].values())

    # up / down -----------------------------------------------------------------------------
    def up(self) -> dict[str, Any]:
        """Make the testbed (or keep it, when it is already up); returns its state."""
        self.require_root()
        if self.is_up():
            log.info("testbed %s is already up", self.prefix)
            return self._load()
        if self._load() or any(Path(f"/run/netns/{self.ns(h)}").exists() for h in HOSTS):
            self.down()  # a half-made one, or leftovers of a killed run under our names
        state: dict[str, Any] = {"prefix": self.prefix, "netns": {}, "cgroups": [],
                                 "procs": {}, "complete": False}
        self._save(state)
        try:
            self._make_netns(state)
            self._make_link(state)
            self._make_cgroups(state)
            self._start_broker(state)
        except BaseException:
            self.down()
            raise
        state["complete"] = True
        self._save(state)
        log.info("testbed %s up: link %s, edge %s, cloud %s", self.prefix, self.link,
                 self.edge, self.cloud)
        return state

    def _make_netns(self, state: dict[str, Any]) -> None:
        for host in HOSTS:
            ns = self.ns(host)
            _run("ip", "netns", "add", ns)
            state["netns"][host] = os.stat(f"/run/netns/{ns}").st_ino
            self._save(state)
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def _write_link_config(self, up: LinkSpec, down: LinkSpec) -> None:
        cfg = self._file("link.conf")
        tmp = cfg.with_suffix(".tmp")
        tmp.write_text(f"{up.config_line('up')}\n{down.config_line('down')}\n")
        tmp.rename(cfg)
        state = self._load()
        state["link"] = {"up": dataclasses.asdict(up), "down": dataclasses.asdict(down)}
        self._save(state)

    def _spawn(self, state: dict[str, Any], name: str, argv: Sequence[str]) -> subprocess.Popen:
        logf = open(self._file(f"{name}.log"), "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(list(argv), stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise InfraError(f"cannot start the testbed's {name} ({argv[0]}): {exc}") from exc
        finally:
            logf.close()
        state["procs"][name] = {"pid": proc.pid, "start": _start_time(proc.pid)}
        self._save(state)
        return proc

    def _log_tail(self, name: str) -> str:
        p = self._file(f"{name}.log")
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def _make_link(self, state: dict[str, Any]) -> None:
        self._write_link_config(self.link, self.link)
        state.update(link=self._load()["link"])
        binary = linkemu_binary()
        argv = [str(binary), f"/run/netns/{self.ns('edge')}", self.tun("edge"),
                f"/run/netns/{self.ns('cloud')}", self.tun("cloud"),
                str(self._file("link.conf")), str(self._file("link.stats"))]
        chrt = shutil.which("chrt")
        proc = self._spawn(state, "linkemu", ([chrt, "-f", "10"] if chrt else []) + argv)
        if chrt is None:
            log.warning("chrt not found: the link emulator runs at normal priority")
        deadline = time.monotonic() + 10
        while not all(_run("ip", "-n", self.ns(h), "link", "show", self.tun(h),
                           check=False).returncode == 0 for h in HOSTS):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise InfraError(f"the link emulator did not make its tun devices:\n"
                                 f"{self._log_tail('linkemu')}")
            time.sleep(0.02)
        for host, peer in (("edge", "cloud"), ("cloud", "edge")):
            ns, dev = self.ns(host), self.tun(host)
            _run("ip", "-n", ns, "addr", "add", self.addr(host), "peer",
                 f"{self.addr(peer)}/32", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")

    def _make_cgroups(self, state: dict[str, Any]) -> None:
        mems = (CGROUP_ROOT / "cpuset" / "cpuset.mems").read_text().strip()
        for host in HOSTS:
            for ctl in CONTROLLERS:
                path = self.cgroup(ctl, host)
                path.mkdir(exist_ok=True)
                state["cgroups"].append(str(path))
                self._save(state)
            spec = self.edge if host == "edge" else self.cloud
            (self.cgroup("cpuset", host) / "cpuset.mems").write_text(mems)
            (self.cgroup("cpuset", host) / "cpuset.cpus").write_text(spec.cpus)
            (self.cgroup("cpu", host) / "cpu.shares").write_text(str(SHARES))
            (self.cgroup("cpu", host) / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (self.cgroup("cpu", host) / "cpu.cfs_quota_us").write_text(str(spec.quota_us()))
        state["cpu"] = {"edge": dataclasses.asdict(self.edge),
                        "cloud": dataclasses.asdict(self.cloud)}

    def _start_broker(self, state: dict[str, Any]) -> None:
        from autosteer.infra.broker import tansu_binary

        url = f"tcp://{self.bootstrap}"
        proc = self._spawn(state, "tansu", [
            *self.wrap(self.broker_host), str(tansu_binary()), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"])
        deadline = time.monotonic() + 15
        while not self.port_open(self.broker_host, self.broker_port,
                                 self.addr(self.broker_host)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise InfraError(f"tansu did not listen on {self.bootstrap} in the "
                                 f"{self.broker_host} namespace:\n{self._log_tail('tansu')}")
            time.sleep(0.05)

    def down(self) -> list[str]:
        """Remove what ``up`` made (and every process left on its hosts); returns what
        was removed. Safe to call when nothing is up."""
        self.require_root()
        st = self._load()
        removed: list[str] = []
        # processes: those we started, then any left in our cgroups and namespaces
        for name, p in st.get("procs", {}).items():
            if _alive(p["pid"], p["start"]):
                _kill(p["pid"], p["start"])
                removed.append(f"process {name} (pid {p['pid']})")
        for pid in self._host_pids(st):
            _kill(pid, _start_time(pid), timeout_s=5)
            removed.append(f"process pid {pid}")
        for path in reversed(st.get("cgroups", [])):
            p = Path(path)
            for _ in range(50):
                try:
                    p.rmdir()
                    removed.append(f"cgroup {path}")
                    break
                except FileNotFoundError:
                    break
                except OSError:  # tasks still leaving
                    time.sleep(0.1)
            else:
                log.warning("could not remove cgroup %s", path)
        for host, ino in st.get("netns", {}).items():
            ns = self.ns(host)
            try:
                same = os.stat(f"/run/netns/{ns}").st_ino == ino
            except OSError:
                continue
            if same:
                _run("ip", "netns", "del", ns, check=False)
                removed.append(f"netns {ns}")
            else:
                log.warning("netns %s is not the one this testbed made; left alone", ns)
        for name in ("link.conf", "link.stats", "link.stats.tmp", "json"):
            self._file(name).unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        return removed

    def _host_pids(self, st: dict[str, Any]) -> list[int]:
        pids: set[int] = set()
        for path in st.get("cgroups", []):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in (Path(path) / "cgroup.procs").read_text().split())
        for host, ino in st.get("netns", {}).items():
            with contextlib.suppress(OSError):
                if os.stat(f"/run/netns/{self.ns(host)}").st_ino != ino:
                    continue
                out = _run("ip", "netns", "pids", self.ns(host), check=False).stdout
                pids.update(int(x) for x in out.split())
        pids.discard(os.getpid())
        return sorted(pids)

    # run time ------------------------------------------------------------------------------
    def _require_up(self) -> dict[str, Any]:
        self.require_root()
        if not self.is_up():
            raise InfraError(f"testbed {self.prefix!r} is not up: run `autosteer testbed up`")
        return self._load()

    def set(self, *, edge_cpu: float | None = None, cloud_cpu: float | None = None,
            link: LinkSpec | None = None, up: LinkSpec | None = None,
            down: LinkSpec | None = None) -> None:
        """Change CPU budgets (cores; 0 or less: no quota) and the link (``link`` for both
        directions, or ``up`` edge -> cloud / ``down`` cloud -> edge) now."""
        st = self._require_up()
        for host, cores in (("edge", edge_cpu), ("cloud", cloud_cpu)):
            if cores is None:
                continue
            spec = HostSpec(st["cpu"][host]["cpus"], cores if cores > 0 else None)
            (self.cgroup("cpu", host) / "cpu.cfs_quota_us").write_text(str(spec.quota_us()))
            st["cpu"][host] = dataclasses.asdict(spec)
        self._save(st)
        if link or up or down:
            cur_up = LinkSpec(**st["link"]["up"])
            cur_down = LinkSpec(**st["link"]["down"])
            self._write_link_config(up or link or cur_up, down or link or cur_down)
            p = st["procs"]["linkemu"]
            os.kill(p["pid"], signal.SIGHUP)

    def link_specs(self) -> tuple[LinkSpec, LinkSpec]:
        st = self._require_up()
        return LinkSpec(**st["link"]["up"]), LinkSpec(**st["link"]["down"])

    def link_stats(self) -> dict[str, dict[str, int]]:
        """Per direction: packets and bytes passed, drops (queue full, loss), held now."""
        out = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self._file("link.stats").read_text().splitlines():
                d, *v = line.split()
                out[d] = dict(zip(("packets", "bytes", "drop_full", "drop_loss", "held"),
                                  map(int, v), strict=False))
        return out

    def cpu_usage_s(self, host: str) -> float:
        """CPU seconds used so far by everything in the host's cgroup."""
        return int((self.cgroup("cpuacct", host) / "cpuacct.usage").read_text()) / 1e9

    def proc_cpu_s(self, name: str) -> float:
        """CPU seconds used by one of the testbed's own processes (``linkemu``, ``tansu``)."""
        pid = self._load()["procs"][name]["pid"]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status(self) -> dict[str, Any]:
        st = self._load()
        out: dict[str, Any] = {"prefix": self.prefix, "up": self.is_up() if st else False,
                               "state_file": str(self.state_file)}
        if not st:
            return out
        out["namespaces"] = {h: self.ns(h) for h in st.get("netns", {})}
        out["addresses"] = {h: self.addr(h) for h in HOSTS}
        out["broker"] = self.bootstrap
        out["processes"] = {n: {"pid": p["pid"], "alive": _alive(p["pid"], p["start"])}
                            for n, p in st.get("procs", {}).items()}
        out["cpu"] = st.get("cpu", {})
        out["link"] = st.get("link", {})
        out["link_stats"] = self.link_stats()
        with contextlib.suppress(OSError, KeyError):
            out["cpu_used_s"] = {h: round(self.cpu_usage_s(h), 2) for h in HOSTS}
        return out

    # putting work on a host ----------------------------------------------------------------
    def netns(self, host: str) -> contextlib.AbstractContextManager[None]:
        return in_netns(self.ns(host))

    def wrap(self, host: str) -> list[str]:
        """An argv prefix that runs a command in the host's cgroups and namespace (it is
        born there, so every thread and child of it is too)."""
        join = " && ".join(f"echo $$ > {self.cgroup(c, host)}/cgroup.procs"
                           for c in CONTROLLERS)
        return ["sh", "-c", f'{join} && exec ip netns exec {self.ns(host)} "$@"', "wrap"]

    def port_open(self, host: str, port: int, addr: str = "127.0.0.1",
                  timeout: float = 0.3) -> bool:
        with self.netns(host), contextlib.suppress(OSError), \
                socket.create_connection((addr, port), timeout=timeout):
            return True
        return False

    def worker(self, settings: Any, host: str, log_path: Path | None,
               loglevel: str = "info") -> Any:
        """A :class:`~autosteer.infra.worker.WorkerProcess` that runs on ``host`` and
        talks to the testbed's broker."""
        from autosteer.infra.worker import WorkerProcess

        self._check_host(host)
        s = settings.model_copy(update={"kafka_bootstrap": self.bootstrap})
        return WorkerProcess(s, log_path, loglevel, wrap=self.wrap(host), netns=self.ns(host))

    def ping(self, count: int = 20, interval_s: float = 0.05) -> dict[str, float]:
        """ICMP round trips edge -> cloud across the link (ms: min, avg, max, mdev)."""
        if shutil.which("ping") is None:
            raise InfraError("ping is missing: apt-get install iputils-ping")
        out = _run("ip", "netns", "exec", self.ns("edge"), "ping", "-n", "-q", "-c",
                   str(count), "-i", str(interval_s), self.addr("cloud")).stdout
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
        loss = re.search(r"([\d.]+)% packet loss", out)
        if not m:
            raise InfraError(f"no RTT in ping's output: {out!r}")
        return {"min": float(m[1]), "avg": float(m[2]), "max": float(m[3]),
                "mdev": float(m[4]), "loss": float(loss[1]) / 100 if loss else 0.0}

    def throughput_mbps(self, seconds: float = 5.0, reverse: bool = False) -> float:
        """TCP goodput edge -> cloud (``reverse``: cloud -> edge), with iperf3."""
        if shutil.which("iperf3") is None:
            raise InfraError("iperf3 is missing: apt-get install iperf3")
        server = subprocess.Popen(["ip", "netns", "exec", self.ns("cloud"), "iperf3", "-s",
                                   "-1", "-B", self.addr("cloud")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            out = _run("ip", "netns", "exec", self.ns("edge"), "iperf3", "-J", "-c",
                       self.addr("cloud"), "-t", str(seconds), *(["-R"] if reverse else []))
            res = json.loads(out.stdout)
            return res["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            server.kill()
            server.wait(5)
