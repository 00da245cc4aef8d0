"""The shape of the code: no module of streams/ over 400 lines, no import cycle anywhere
in the package, no role that imports the worker or another role's internals, and no test
that sleeps to wait for a state change."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "autosteer"
MAX_LINES = 400
KNOWN_SLEEPS = {"test_testbed.py", "test_kafka_cluster.py"}
SKIP = ("tests", "bench", "docs", "examples", ".venv", "build")


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package (the repo root)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PACKAGE, *parts])] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _statements(tree: ast.Module, lazy: bool) -> list[ast.stmt]:
    """The module's top-level statements; with ``lazy``, also every statement nested in
    functions, classes and blocks, but never the body of ``if TYPE_CHECKING:`` (it never
    runs)."""
    if not lazy:
        return list(tree.body)
    out: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for stmt in child.orelse:
                    out.append(stmt)
                    visit(stmt)
                continue
            if isinstance(child, ast.stmt):
                out.append(child)
            visit(child)

    visit(tree)
    return out


def imports(name: str, path: Path, known: set[str], lazy: bool = False) -> set[str]:
    """The package's modules that ``name`` imports at module level (not inside functions
    or ``if TYPE_CHECKING:``): the imports that run when it is imported. With ``lazy``,
    also the imports inside functions (they run when the function is first called)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in _statements(tree, lazy):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                full = f"{base}.{a.name}"
                add(full if full in known else base)
    return out


def graph(lazy: bool = False) -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known, lazy) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_found() -> None:
    g = graph()
    assert "autosteer.streams.roles.router" in g
    assert "autosteer.streams.runtime" in g["autosteer.streams.roles.router"]


def test_no_import_cycle_anywhere_in_the_package() -> None:
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_function_level_imports_are_found() -> None:
    lazy = graph(lazy=True)
    assert "autosteer.streams.worker" in lazy["autosteer.streams.cli.run"]  # in `worker`
    assert "autosteer.streams.worker" not in graph()["autosteer.streams.cli.run"]


def test_no_import_cycle_even_through_function_level_imports() -> None:
    """A cycle closed by an import inside a function is still a cycle: the two modules
    need each other, and which one loads first depends on who calls what."""
    found = cycles(graph(lazy=True))
    assert not found, f"import cycles through function-level imports: {found}"


def test_no_module_in_streams_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "streams").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_roles_import_neither_the_worker_nor_each_other_but_through_public_classes() -> None:
    g = graph()
    for name, deps in g.items():
        if not name.startswith("autosteer.streams.roles."):
            continue
        assert "autosteer.streams.worker" not in deps, f"{name} imports the worker"
        assert "autosteer.streams.web" not in deps and not any(
            d.startswith("autosteer.streams.web.") for d in deps), f"{name} imports the web"
    web = {d for n, deps in g.items() if n.startswith("autosteer.streams.web") for d in deps}
    assert not any(d.startswith("autosteer.streams.roles.") for d in web), \
        "the web layer sees the worker's read-only view only"


SLEEP_TO_WAIT = re.compile(r"^\s*time\.sleep\(\s*(\d+(?:\.\d+)?)\s*\)(.*)$", re.M)


def test_no_test_sleeps_to_wait_for_a_state_change() -> None:
    """A test waits on the event that matters (``wait_for``, a consumer's ``until``); a
    sleep of a second or more is a guess at how long something takes, unless it is part
    of the scenario (a fault held for a time, a load kept up), which it says with a
    ``# scenario:`` comment."""
    found = []
    for path in (ROOT / "tests").glob("test_*.py"):
        if path.name in KNOWN_SLEEPS:
            continue
        for m in SLEEP_TO_WAIT.finditer(path.read_text()):
            if float(m.group(1)) >= 1.0 and "# scenario:" not in m.group(2):
                line = path.read_text()[:m.start()].count("\n") + 1
                found.append(f"{path.name}:{line}: {m.group(0).strip()}")
    assert not found, "tests that sleep and hope:\n" + "\n".join(found)


def test_the_demo_does_not_import_the_cli() -> None:
    lazy = graph(lazy=True)
    assert not any(d.startswith("autosteer.streams.cli") for d in lazy["autosteer.streams.demo"])
    assert "autosteer.streams.demo" in lazy["autosteer.streams.cli.run"]  # the other way round
