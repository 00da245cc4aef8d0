"""The endpoints (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autosteer.errors import QueryRejected, StoreError
from autosteer.streams.web.cluster import jsonable
from autosteer.streams.web.prometheus import TIERS
from autosteer.streams.web.state import Web
from faust import web

if TYPE_CHECKING:
    from autosteer.streams.worker import WorkerView

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")



NICE_BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def bucket_for(minutes: int, window_s: int, points: int = 120) -> int:
    """A round bucket that gives about ``points`` buckets, never shorter than a window.

    >>> bucket_for(15, 10), bucket_for(5, 2), bucket_for(24 * 60, 10)
    (10, 5, 900)
    """
    want = minutes * 60 / points
    return max(window_s, next((b for b in NICE_BUCKETS_S if b >= want), NICE_BUCKETS_S[-1]))


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(request.query.get(name, default))))
    except ValueError:
        return default


def register_pages(app: Any, view: WorkerView) -> Web:
    """Add the endpoints and the UI to the Faust ``app``; returns the :class:`Web` state."""
    ui = Web(view, app)
    app.sensors.add(ui.live)

    @app.timer(1.0, name="ui-rates")
    async def _sample() -> None:
        ui.sample()

    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"status": "ok", "node": view.settings.node})

    class Ready(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ok, body = await ui.ready()
            return self.json(body, status=200 if ok else 503)

    class Sql(web.View):
        async def _run(self, sql: str) -> web.Response:
            loop = asyncio.get_running_loop()
            try:
                cols, rows = await loop.run_in_executor(
                    None, lambda: view.store().query(sql, readonly=True))
            except QueryRejected as exc:
                return self.json({"error": str(exc)}, status=400)
            except StoreError as exc:
                return self.json({"error": str(exc)}, status=422)
            return self.json({"columns": cols, "rows": [jsonable(r) for r in rows]})

        async def get(self, request: web.Request) -> web.Response:
            return await self._run(request.query.get("q", ""))

        async def post(self, request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return self.json({"error": 'the body must be JSON: {"sql": "SELECT ..."}'},
                                 status=400)
            return await self._run(str(body.get("sql", "")) if isinstance(body, dict) else "")

    class Status(web.View):
        async def get(self, request: web.Request) -> web.Response:
            c = view.counts()
            return self.json({
                "node": view.settings.node,
                "roles": sorted(view.roles),
                "policy": view.policy,
                "routed": {t: c[f"routed_{t}"] for t in TIERS},
                "detected": {t: c[f"detected_{t}"] for t in TIERS},
                "dead_letters": c["dead_letters"], "telemetry_rows": c["telemetry_rows"],
                "store_retries": c["store_retries"],
                "cameras": {k: {"url": v.url, **v.stats.as_dict()}
                            for k, v in view.cameras().items()},
                "agents": view.health.snapshot(),
                "delivery": view.delivery.as_dict(),
                "broker_lag": [{"topic": t, "group": g, "lag": n}
                               for (t, g), n in sorted(view.broker_lag().items())],
            })

    class Metrics(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.text(ui.metrics(), content_type="text/plain; version=0.0.4")

    class Index(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html((STATIC_DIR / "index.html").read_text())

    class GraphApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await ui.graph())

    class CamerasApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await ui.cameras())

    class Thumbnail(web.View):
        async def get(self, request: web.Request, camera: str) -> web.Response:
            try:
                jpeg = await ui.thumbnail(camera)
            except Exception as exc:
                return self.json({"error": f"cannot draw {camera}: {exc}"}, status=500)
            if jpeg is None:
                return self.json({"error": f"no detected frame of {camera!r} here"}, status=404)
            return self.bytes(jpeg, content_type="image/jpeg",
                              headers={"Cache-Control": "no-store"})

    class TimelineApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            minutes = _int_param(request, "minutes", 15, 1, 24 * 60)
            auto = bucket_for(minutes, view.settings.window_s)
            return self.json(await ui.timeline(
                minutes, _int_param(request, "bucket_s", auto, 1, 3600)))

    class FeedsApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await ui.feeds())

    class IndexNoSlash(Index):
        pass

    class Fault(web.View):
        """Fault injection for tests and benchmarks (AUTOSTEER_FAULT_INJECTION=true):
        ``POST /fault?delay_ms=50`` adds that much service time to every detector batch
        of this worker; ``delay_ms=0`` removes it. ``POST /fault?crash=detect-edge``
        makes that agent's next batch raise inside the agent (it crashes, restarts and
        retries the batch message by message)."""

        async def post(self, request: web.Request) -> web.Response:
            if not view.settings.fault_injection:
                return self.json({"error": "fault injection is off; set "
                                  "AUTOSTEER_FAULT_INJECTION=true"}, status=403)
            if "crash" in request.query:
                agent = request.query["crash"]
                known = [a["name"] for a in view.health.snapshot() if a["kind"] == "agent"]
                if agent not in known:
                    return self.json({"error": f"no agent {agent!r} here; agents: "
                                      f"{', '.join(known)}"}, status=400)
                view.supervisor.crash_next_batch(agent)
                return self.json({"node": view.settings.node, "crash": agent})
            try:
                delay = float(request.query.get("delay_ms", "0"))
            except ValueError:
                return self.json({"error": "delay_ms must be a number"}, status=400)
            view.faults.delay_ms = max(0.0, delay)
            return self.json({"node": view.settings.node, "delay_ms": delay})

    for path, page in (("/health", Health), ("/ready", Ready), ("/sql", Sql),
                       ("/status", Status), ("/metrics", Metrics), ("/ui/", Index),
                       ("/ui", IndexNoSlash),
                       ("/api/graph", GraphApi), ("/api/cameras", CamerasApi),
                       ("/api/cameras/{camera}/thumbnail.jpg", Thumbnail),
                       ("/api/timeline", TimelineApi), ("/api/feeds", FeedsApi),
                       ("/fault", Fault)):
        app.page(path)(page)
    app.web.add_static("/ui/static/", STATIC_DIR)
    return ui
