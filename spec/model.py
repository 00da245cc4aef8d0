"""The spec's shape: pydantic models for the application, the resources and the sources.

Only the shape and single-field rules live here (types, ranges, names); rules that
relate fields to each other (a flow naming an unknown operator, a cycle, memory over
capacity, an SLO no placement can meet) live in :mod:`autosteer.spec.checks`, so that
all of them are reported at once, each with its YAML path.

>>> op = Operator(name="detect", model="ssd", builds=[Build(latency_ms=40)])
>>> op.builds[0].accelerator, op.resources.cpu
('cpu', 1.0)
>>> Flow.model_validate({"kind": "pipe", "from": "ingest", "to": "detect"}).sources
['ingest']
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, WithJsonSchema

NAME = r"^[a-z0-9][a-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=NAME, max_length=63)]
Role = Literal["router", "edge", "cloud", "sink", "ingest", "anomaly", "retrain", "none"]
Tier = Literal["edge", "cloud"]
Arch = Literal["x86_64", "aarch64", "armv7"]
Accelerator = Literal["cpu", "nvidia", "amd", "intel", "mali", "adreno", "npu", "tpu"]
GpuKind = Literal["nvidia", "amd", "intel", "mali", "adreno", "npu", "tpu"]
FLOW_KINDS = ("pipe", "distribute", "reduce")


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Names = Annotated[
    list[Name],
    BeforeValidator(_one_or_many),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": NAME},
                              {"type": "array", "items": {"type": "string", "pattern": NAME},
                               "minItems": 1}]}),
    Field(min_length=1),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- application -------------------------------------------------------------------------
class Build(Strict):
    """One compiled variant of an operator: what it needs and how fast it is."""

    accelerator: Accelerator = Field("cpu", description="'cpu' or the GPU/NPU kind it targets")
    arch: Arch | Literal["any"] = Field("any", description="CPU architecture it is built for")
    libraries: list[str] = Field(
        default_factory=list, description="libraries the node must have, 'name' or 'name>=1.2'")
    latency_ms: float = Field(gt=0, description="service time per item on a reference device "
                                               "of this kind (node speed 1.0)")


class Needs(Strict):
    """What one operator reserves on its node."""

    cpu: float = Field(1.0, gt=0, description="CPU cores")
    memory_mb: float = Field(256, gt=0)
    gpu_memory_mb: float = Field(0, ge=0, description="GPU memory, for GPU builds")


class Operator(Strict):
    """One step of the application: a model or a function."""

    name: Name
    version: str = "1"
    model: str | None = Field(None, description="model it runs (exclusive with function)")
    function: str | None = Field(None, description="function it runs (exclusive with model)")
    role: Role | None = Field(None, description="autosteer worker role that runs it; "
                                               "inferred when absent, 'none' = no worker")
    batch_size: int = Field(1, ge=1, le=64)
    stateful: bool = Field(False, description="keeps state: runs as one consumer")
    resources: Needs = Field(default_factory=Needs)
    builds: list[Build] = Field(min_length=1, description="compiled variants")
    accuracy: float | None = Field(None, ge=0, le=1, description="model accuracy (e.g. mAP)")
    output_kb: float = Field(1.0, ge=0, description="size of each item it emits")
    tier: Tier | None = Field(None, description="only place on nodes of this tier")
    node: Name | None = Field(None, description="pin to this node")


class Flow(Strict):
    """Items moving between operators.

    ``pipe`` is one to one, ``distribute`` sends each item to one of several operators
    (fan-out, shares by ``weights`` or chosen by the planner), ``reduce`` merges several
    operators' items into one (fan-in). A ``feedback`` flow may close a cycle; it carries
    no latency (e.g. detections read back by the router to learn)."""

    kind: Literal["pipe", "distribute", "reduce"]
    sources: Names = Field(alias="from")
    to: Names
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="distribute only: share per target; absent = the planner chooses")
    item_kb: float | None = Field(None, ge=0, description="item size; default the sender's")
    feedback: bool = False


class Requirements(Strict):
    latency_slo_ms: float | None = Field(None, gt=0, description="expected end-to-end latency")
    accuracy_floor: float | None = Field(None, ge=0, le=1)
    throughput_fps_per_camera: float | None = Field(None, gt=0, description="frames per "
                                                   "second each camera must be processed at")
    max_utilization: float = Field(0.8, gt=0, le=1, description="busiest a core, GPU or link "
                                                              "may be planned")


class Application(Strict):
    name: Name
    operators: list[Operator] = Field(min_length=1)
    flows: list[Flow] = Field(default_factory=list)
    requirements: Requirements = Field(default_factory=Requirements)


# --- resources -----------------------------------------------------------------------------
class Gpu(Strict):
    kind: GpuKind
    model: str = ""
    count: int = Field(1, ge=1)
    memory_mb: float = Field(0, ge=0)
    speed: float = Field(1.0, gt=0, description="relative to the reference device of its kind")


class Node(Strict):
    name: Name
    tier: Tier
    arch: Arch = "x86_64"
    cpu: float = Field(gt=0, description="CPU cores")
    memory_mb: float = Field(gt=0)
    speed: float = Field(1.0, gt=0, description="CPU speed relative to the reference core")
    gpu: Gpu | None = None
    libraries: list[str] = Field(default_factory=list, description="'name' or 'name==1.2'")
    location: str = ""
    host: str = Field("local", description="where it runs; 'local' = this machine")


class Link(Strict):
    """An undirected network link between two nodes."""

    between: Annotated[list[Name], Field(min_length=2, max_length=2)]
    bandwidth_mbps: float = Field(gt=0)
    latency_ms: float = Field(0.0, ge=0)


class Resources(Strict):
    nodes: list[Node] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)


# --- sources -------------------------------------------------------------------------------
class Camera(Strict):
    id: Name
    url: str = Field(pattern=r"^rtsps?://\S+$", description="rtsp:// or rtsps:// URL")
    fps: float = Field(gt=0)
    resolution: str = Field("640x480", pattern=r"^[1-9][0-9]*x[1-9][0-9]*$")
    operator: Name | None = Field(None, description="entry operator it feeds; default the only one")


class Stream(Strict):
    """A non-camera input (messages, tweets...)."""

    id: Name
    rate_per_s: float = Field(gt=0)
    operator: Name | None = None


class Sources(Strict):
    cameras: list[Camera] = Field(default_factory=list)
    streams: list[Stream] = Field(default_factory=list)


class Spec(Strict):
    """A whole deployment: what runs (application), where (resources), on what (sources)."""

    version: Literal[1] = 1
    application: Application
    resources: Resources
    sources: Sources = Field(default_factory=Sources)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _origin: str = PrivateAttr("<spec>")

    def line(self, path: str) -> int | None:
        """Line of ``path`` (e.g. ``application.flows[2].to``) in the YAML it came from."""
        return self._lines.get(path)

    @property
    def origin(self) -> str:
        return self._origin

    def operator(self, name: str) -> Operator:
        return next(o for o in self.application.operators if o.name == name)

    def node(self, name: str) -> Node:
        return next(n for n in self.resources.nodes if n.name == name)
