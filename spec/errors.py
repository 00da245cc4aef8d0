"""What can go wrong with a spec, said with its place in the YAML.

    AutosteerError
    └── SpecError         a spec cannot be read or is invalid (``problems`` say where)
        ├── PlacementError  no placement meets capacity, compatibility and bandwidth
        └── DeployError     a plan cannot become workers, or a worker cannot start

>>> p = Problem("application.flows[2].to", "unknown operator 'detct' (did you mean 'detect'?)", 14)
>>> str(p)
"application.flows[2].to: unknown operator 'detct' (did you mean 'detect'?) (line 14)"
>>> str(SpecError("bad spec", [p], origin="video.yaml")).splitlines()[1]
"  video.yaml:14: application.flows[2].to: unknown operator 'detct' (did you mean 'detect'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from autosteer.errors import AutosteerError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: where (a YAML path such as ``resources.nodes[1].memory_mb``), what,
    and the line it starts on when the spec came from YAML."""

    path: str
    message: str
    line: int | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path}: {self.message}{where}"

    def located(self, origin: str) -> str:
        """``origin:line: path: message``, the form editors jump to."""
        line = f":{self.line}" if self.line else ""
        kind = "" if self.severity == "error" else f"{self.severity}: "
        return f"{origin}{line}: {kind}{self.path}: {self.message}"


class SpecError(AutosteerError):
    """A spec cannot be read, is invalid, or cannot be placed; ``problems`` says where."""

    def __init__(self, summary: str, problems: Sequence[Problem] = (), *,
                 origin: str = "<spec>") -> None:
        self.summary = summary
        self.problems = list(problems)
        self.origin = origin
        lines = [summary] + [f"  {p.located(origin)}" for p in self.problems]
        super().__init__("\n".join(lines))


class PlacementError(SpecError):
    """No placement satisfies the capacity, compatibility and bandwidth constraints."""


class DeployError(SpecError):
    """A plan cannot be turned into workers, or a worker cannot be started."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ``''``.

    >>> did_you_mean("detct", ["detect", "router"])
    " (did you mean 'detect'?)"
    >>> did_you_mean("zzz", ["detect"])
    ''
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
