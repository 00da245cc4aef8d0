"""HTTP endpoints on the worker's own (Faust/aiohttp) web server.

- ``GET /health``            liveness
- ``GET|POST /sql?q=...``    read-only SQL over the telemetry store (one SELECT-like
                             statement, row and time limits); ``autosteer sql`` uses it
                             when the embedded store is locked by this worker
- ``GET /status``            counters, routing split and per-camera ingest state
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from autosteer.errors import QueryRejected, StoreError
from faust import web

if TYPE_CHECKING:
    from autosteer.streams.app import Pipeline


def _jsonable(v: Any) -> Any:
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def register_pages(pipeline: Pipeline) -> None:
    app = pipeline.app

    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"status": "ok", "node": pipeline.settings.node})

    class Sql(web.View):
        async def _run(self, sql: str) -> web.Response:
            loop = asyncio.get_running_loop()
            try:
                cols, rows = await loop.run_in_executor(
                    None, lambda: pipeline.store.query(sql, readonly=True))
            except QueryRejected as exc:
                return self.json({"error": str(exc)}, status=400)
            except StoreError as exc:
                return self.json({"error": str(exc)}, status=422)
            return self.json({"columns": cols, "rows": [_jsonable(r) for r in rows]})

        async def get(self, request: web.Request) -> web.Response:
            return await self._run(request.query.get("q", ""))

        async def post(self, request: web.Request) -> web.Response:
            body = await request.json()
            return await self._run(str(body.get("sql", "")) if isinstance(body, dict) else "")

    class Status(web.View):
        async def get(self, request: web.Request) -> web.Response:
            c = pipeline.counters
            return self.json({
                "node": pipeline.settings.node,
                "roles": sorted(pipeline.roles),
                "policy": repr(pipeline.policy),
                "routed": c.routed, "detected": c.detected,
                "dead_letters": c.dead_letters, "telemetry_rows": c.telemetry_rows,
                "store_retries": c.store_retries,
                "cameras": {k: {"url": v.url, **v.stats.as_dict()}
                            for k, v in pipeline.cameras.items()},
            })

    app.page("/health")(Health)
    app.page("/sql")(Sql)
    app.page("/status")(Status)
