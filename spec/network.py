"""Routes between nodes over the declared links (lowest latency, then fewest hops).

>>> from autosteer.spec.model import Link
>>> net = Network(["a", "b", "c"], [Link(between=["a", "b"], bandwidth_mbps=100, latency_ms=2),
...                                 Link(between=["b", "c"], bandwidth_mbps=10, latency_ms=5)])
>>> r = net.route("a", "c")
>>> r.latency_ms, r.bandwidth_mbps, r.links
(7.0, 10.0, (0, 1))
>>> net.transfer_ms("a", "c", item_kb=50)  # 7 ms + 400 kbit at 10 Mbit/s
47.0
>>> net.route("a", "a").latency_ms, net.route("a", "z")
(0.0, None)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from autosteer.spec.model import Link


@dataclass(frozen=True)
class Route:
    latency_ms: float
    bandwidth_mbps: float  # the narrowest link on the way; inf on one node
    links: tuple[int, ...]  # indices into resources.links


class Network:
    """All-pairs routes, computed once (Dijkstra from every node)."""

    def __init__(self, nodes: Sequence[str], links: Sequence[Link]) -> None:
        self.nodes = list(nodes)
        self.links = list(links)
        adj: dict[str, list[tuple[str, int]]] = {n: [] for n in self.nodes}
        for i, link in enumerate(self.links):
            a, b = link.between
            if a in adj and b in adj and a != b:
                adj[a].append((b, i))
                adj[b].append((a, i))
        self._routes: dict[tuple[str, str], Route] = {}
        for start in self.nodes:
            self._from(start, adj)

    def _from(self, start: str, adj: dict[str, list[tuple[str, int]]]) -> None:
        best: dict[str, tuple[float, int]] = {start: (0.0, 0)}
        via: dict[str, tuple[str, int]] = {}
        heap = [(0.0, 0, start)]
        while heap:
            lat, hops, node = heapq.heappop(heap)
            if (lat, hops) > best[node]:
                continue
            for nxt, i in adj[node]:
                cand = (lat + self.links[i].latency_ms, hops + 1)
                if nxt not in best or cand < best[nxt]:
                    best[nxt] = cand
                    via[nxt] = (node, i)
                    heapq.heappush(heap, (cand[0], cand[1], nxt))
        for end, (lat, _) in best.items():
            path: list[int] = []
            node = end
            while node != start:
                node, i = via[node]
                path.append(i)
            path.reverse()
            bw = min((self.links[i].bandwidth_mbps for i in path), default=math.inf)
            self._routes[(start, end)] = Route(float(lat), float(bw), tuple(path))

    def route(self, a: str, b: str) -> Route | None:
        """The route from ``a`` to ``b``; None when no links join them."""
        return self._routes.get((a, b))

    def transfer_ms(self, a: str, b: str, item_kb: float) -> float:
        """Time to move one item: route latency plus its size at the narrowest bandwidth."""
        r = self.route(a, b)
        if r is None:
            return math.inf
        if not r.links:
            return 0.0
        return r.latency_ms + item_kb * 8.0 / r.bandwidth_mbps
