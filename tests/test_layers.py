"""The house has one downward path: every import in hetsim goes to its own layer or below, and
no two modules import each other (directly or round a ring). DESIGN.md draws the same layers."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hetsim

ROOT = Path(hetsim.__file__).parent

#: low to high; a module may import its own layer and those before it. A package name covers
#: its modules unless one of them is named on its own.
LAYERS = [
    ["errors"],
    ["config", "columns", "progress", "plots", "sweep_plots", "outputs", "overrides",
     "executors"],
    ["precision", "model_parts", "hf_config"],
    ["hardware", "models", "workload", "kerneldb", "runtimes"],
    ["perf"],
    ["calibrate"],          # never the simulator: it runs on GPU hosts with only torch
    ["scenario", "engine.routers", "resilience"],
    ["resolve"],
    ["engine"],
    ["metrics", "summary"],
    ["report"],
    ["api"],
    ["goodput_search"],
    ["planner", "check"],
    ["sweeps"],
    ["cli_args"],
    ["cli", "__main__", "calibrate.__main__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:                      # the package root is the entry, not a layer
            out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYER:
            return LAYER[".".join(parts[:n])]
    raise AssertionError(f"hetsim.{module} is in no layer: add it to LAYERS and DESIGN.md")


def _defined_in(name: str) -> str | None:
    """The module behind a name imported from the package root (its lazy names included)."""
    if name in hetsim._LAZY:
        return hetsim._LAZY[name]
    mod = getattr(getattr(hetsim, name, None), "__module__", None) or ""
    return mod.split(".", 1)[1] if mod.startswith("hetsim.") else None


def _imports(module: str, path: Path, modules) -> set[str]:
    """hetsim modules ``module`` imports anywhere in its body (lazy imports count too; a name
    from the package root counts as the module that defines it)."""
    is_pkg = path.name == "__init__.py"
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "hetsim":
                target = node.module.split(".")[1:]
            else:
                continue
            names = [".".join(target + [a.name]) for a in node.names]
            subs = [n for n in names if n in modules]
            if subs or target:
                found.update(subs or [".".join(target)])
            else:                      # from the package root: where each name lives
                found.update(filter(None, (_defined_in(a.name) for a in node.names)))
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith("hetsim."))
    return {m for m in found if m and m != module}


MODULES = _modules()
GRAPH = {m: _imports(m, p, MODULES) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down(module):
    up = sorted(t for t in GRAPH[module] if _layer(t) > _layer(module))
    assert not up, f"hetsim.{module} (layer {_layer(module)}) imports higher layers: {up}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import ring found by a depth-first walk (each as the path round it)."""
    seen, on_stack, cycles = set(), [], []

    def visit(m):
        if m in on_stack:
            cycles.append(on_stack[on_stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        on_stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t in graph:
                visit(t)
        on_stack.pop()

    for m in sorted(graph):
        visit(m)
    return cycles


def test_no_import_cycle():
    assert not _cycles(GRAPH), f"import cycles: {_cycles(GRAPH)}"


def test_the_checker_sees_rings_upward_and_root_imports(tmp_path):
    """The rules above can fail: a ring is found, an upward import is seen, and a name taken
    from the package root counts as the module behind it."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    a = tmp_path / "a.py"
    a.write_text("from .engine import sim\nfrom hetsim.metrics import summarize\n"
                 "def f():\n    from . import run, __version__\n")
    found = _imports("config", a, {"engine.sim", "metrics", "api"})
    assert found == {"engine.sim", "metrics", "api"}
    assert all(_layer(m) > _layer("config") for m in found)
