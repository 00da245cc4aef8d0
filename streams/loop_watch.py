"""Watching the closed loop from outside: what ``autosteer demo --drift`` and
``bench/closed_loop.py`` print.

:class:`LoopWatch` reads the quality, retrain-request, model-update and detection topics
with a consumer of its own, keeps the agreement of every shadow pair and the loop's
events, and scores a run: agreement before a drift, in the dark, after the promoted
version, and when it came back to 95 % of before.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.settings import Settings
from autosteer.streams.supervise import poll_until
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, QualityRecord
from confluent_kafka import Consumer


@dataclass
class LoopScore:
    """One run's numbers (agreements are means of per-pair F1)."""

    before: float
    in_the_dark: float | None
    after: float | None
    recovered_fraction: float
    recovery_s: float | None  # drift -> end of the first 10 s window at >= 95 % of before
    frames_seen: int

    def as_dict(self) -> dict[str, float | int | None]:
        r = lambda v: None if v is None else round(v, 3)  # noqa: E731
        return {"agreement_before": r(self.before), "agreement_in_the_dark": r(self.in_the_dark),
                "agreement_after": r(self.after),
                "recovered_fraction": r(self.recovered_fraction),
                "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1)}


@dataclass
class LoopWatch:
    """Times are seconds since the watch started (``time.monotonic`` based)."""

    settings: Settings
    quality: list[tuple[float, QualityRecord]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    seen: set[tuple[str, int]] = field(default_factory=set)
    latency: list[tuple[float, float]] = field(default_factory=list)  # (t, e2e ms)
    drift_at: float | None = None
    promoted_at: float | None = None

    def __post_init__(self) -> None:
        self.names = TopicNames(self.settings.topic_prefix)
        self.t0 = time.monotonic()
        self._consumer = Consumer(self.settings.consumer_config(
            f"{self.settings.topic_prefix}-loopwatch-{uuid.uuid4().hex[:6]}"))
        self._consumer.subscribe([self.names.quality, self.names.retrain_requests,
                                  self.names.models_updates, self.names.detections])

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str) -> None:
        """Note an outside event (``night falls``); the first one is the drift."""
        if self.drift_at is None:
            self.drift_at = self.now()
        self.events.append((self.now(), what))

    def poll(self, timeout_s: float = 0.2) -> str | None:
        """Read one message; return a line worth printing (a loop event), else None."""
        m = self._consumer.poll(timeout_s)
        return None if m is None or m.error() else self.take(m)

    def take(self, m: Any) -> str | None:
        """Keep what message ``m`` says; return a line worth printing (a loop event)."""
        now, topic = self.now(), m.topic()
        if topic == self.names.quality:
            self.quality.append((now, QualityRecord.parse(m.value())))
        elif topic == self.names.detections:
            d = Detection.parse(m.value())
            if (d.camera, d.seq) not in self.seen:
                self.seen.add((d.camera, d.seq))
                self.latency.append((now, d.latency.total_ms))
        elif topic == self.names.retrain_requests:
            req = RetrainRequest.parse(m.value())
            self.events.append((now, "retrain requested"))
            return f"t={now:.0f}s retrain requested for {req.camera}: {req.reason}"
        elif topic == self.names.models_updates:
            up = ModelUpdate.parse(m.value())
            what = ("promoted" if up.canary >= 1 else "rolled back" if up.canary == 0
                    else f"canary {up.canary:.0%}")
            self.events.append((now, f"{up.version} {what}"))
            if up.canary >= 1:
                self.promoted_at = now
            metrics = {k: round(v, 3) for k, v in up.metrics.items() if "agreement" in k}
            return f"t={now:.0f}s model {up.model}@{up.version}: {what} {metrics}"
        return None

    def follow(self, night: Callable[[], None], day_s: float, night_max_s: float,
               settle_s: float, echo: Callable[[str], None], progress_s: float = 0.0) -> None:
        """Run the experiment: at ``day_s`` call ``night`` (the drift) and mark it; echo
        the loop's events (and, every ``progress_s`` if > 0, the last 10 s's agreement);
        return ``settle_s`` after a promotion, or ``night_max_s`` after the drift."""
        last = 0.0

        def done() -> bool:
            now = self.now()
            return self.drift_at is not None and (now - self.drift_at > night_max_s or (
                self.promoted_at is not None and now - self.promoted_at > settle_s))

        def tick() -> None:  # after every poll: the drift when it is due, the progress
            nonlocal last
            now = self.now()
            if self.drift_at is None and now >= day_s:
                night()
                self.mark("night falls")
                echo(f"t={now:.0f}s night falls (contrast x0.12)")
            if progress_s > 0 and now - last >= progress_s:
                last = now
                a = self.agreement(now - 10.0)
                echo(f"t={now:.0f}s edge/cloud agreement (last 10 s): "
                     f"{'-' if a is None else f'{a:.3f}'}  frames {len(self.seen)}")

        def handle(m: Any) -> None:
            line = self.take(m)
            if line:
                echo(line)

        poll_until(self._consumer, handle, done, timeout_s=0.2, each=tick)

    def agreement(self, since_s: float, until_s: float | None = None) -> float | None:
        """Mean agreement of the pairs seen in ``[since_s, until_s)``."""
        got = [q.agreement for t, q in self.quality
               if t >= since_s and (until_s is None or t < until_s)]
        return statistics.mean(got) if got else None

    def score(self, day_from_s: float = 0.0) -> LoopScore:
        """Before = pairs from ``day_from_s`` to the drift; in the dark = from 5 s after
        it to the promotion; after = from 3 s after the promotion on."""
        drift = self.drift_at if self.drift_at is not None else float("inf")
        before = self.agreement(day_from_s, drift) or float("nan")
        dark = self.agreement(drift + 5, self.promoted_at)
        after = self.agreement(self.promoted_at + 3) if self.promoted_at is not None else None
        recovery = None
        if self.promoted_at is not None:
            for t, _ in self.quality:
                if t < self.promoted_at:
                    continue
                w = [q.agreement for u, q in self.quality if t <= u < t + 10]
                if len(w) >= 3 and statistics.mean(w) >= 0.95 * before:
                    recovery = t + 10 - drift
                    break
        fraction = after / before if after is not None and before == before else 0.0
        return LoopScore(before, dark, after, fraction, recovery, len(self.seen))

    def rolling(self, pairs: int = 10) -> list[tuple[float, float]]:
        """Agreement as a running mean over the last ``pairs`` pairs, for a plot."""
        out = []
        for i, (t, _) in enumerate(self.quality):
            w = [q.agreement for _, q in self.quality[max(0, i - pairs + 1):i + 1]]
            out.append((t, statistics.mean(w)))
        return out

    def chart(self) -> str:
        """Two SVG charts, one above the other: agreement and edge confidence, and the
        end-to-end latency (median per second), with the loop's events marked."""
        from autosteer.telemetry.report import line_chart

        per_s: dict[int, list[float]] = {}
        for t, ms in self.latency:
            per_s.setdefault(int(t), []).append(ms)
        latency = [(float(t), statistics.median(v)) for t, v in sorted(per_s.items())]
        conf = [(t, q.edge_mean_score) for t, q in self.quality]
        top = line_chart({"agreement (10-pair mean)": self.rolling(),
                          "edge mean confidence": conf},
                         "closed loop: edge/cloud agreement", "", width=900, height=260,
                         markers=self.events)
        bottom = line_chart({"e2e latency, median per second": latency}, "latency", "ms",
                            width=900, height=200, markers=self.events)
        inner = [svg.split(">", 1)[1].rsplit("</svg>", 1)[0] for svg in (top, bottom)]
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="900" height="460" '
                'font-family="sans-serif" font-size="11">'
                f'<g>{inner[0]}</g><g transform="translate(0,260)">{inner[1]}</g></svg>')

    def close(self) -> None:
        self._consumer.close()
