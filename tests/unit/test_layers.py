"""The package's layers, read from its imports (docs/architecture.md has the picture).

Every import statement counts, also one inside a function (a lazy import is still a
dependency), and the parent packages an import runs (``import a.b.c`` runs ``a`` and
``a.b`` first: their module-level imports). Imports under ``if TYPE_CHECKING:`` never
run: they count for the layers, not for what a module reaches or for cycles.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from automl_runner.config.schema import AutoMLConfig

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "automl_runner"
PLUGIN = ROOT / "plugins" / "hydra_plugins" / "automl_ray_launcher"

# each subpackage (or top-level module) of automl_runner and its layer, lowest first: a
# module imports only its own layer and those below it
LAYERS = {
    # the vocabulary every layer shares
    "errors": 0,
    "records": 0,
    "space": 0,
    "metrics": 0,
    "console": 0,
    "dates": 0,
    "config": 0,
    "worker": 1,
    "search": 2,
    "data": 2,
    "engine": 3,
    "tracking": 4,
    "experiment": 5,
    "entry": 6,
}
# the package's own __init__ (the Python API) and __main__ stand with the entry points
TOP = {"automl_runner": 6, "automl_runner.__main__": 6}


def _module_name(path: Path) -> str:
    if path.is_relative_to(PACKAGE):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    else:
        parts = path.relative_to(PLUGIN.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(path: Path) -> list[tuple[str, str]]:
    """(absolute module name, kind) for every import in the file; kind is "top" (runs when
    the module is imported), "lazy" (inside a function: runs when it is called) or
    "typing" (under TYPE_CHECKING: never runs)."""
    name = _module_name(path)
    package = name if _is_package(path) else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    kinds: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kinds.update({id(n): "lazy" for n in ast.walk(node)})
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            kinds.update({id(n): "typing" for stmt in node.body for n in ast.walk(stmt)})
    out = []
    for node in ast.walk(tree):
        kind = kinds.get(id(node), "top")
        if isinstance(node, ast.Import):
            out += [(a.name, kind) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, kind))
            # `from pkg import submodule` imports the submodule
            out += [(f"{module}.{a.name}", kind) for a in node.names]
    return out


RANK = {"typing": 0, "parent": 1, "lazy": 2, "top": 3}


def _graph() -> dict[str, dict[str, str]]:
    """module -> {imported module or external package: kind}. An import of a.b.c also runs
    a and a.b (kind "parent" when the import itself does not name them)."""
    files = list(PACKAGE.rglob("*.py")) + list(PLUGIN.rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    graph: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        edges: dict[str, str] = {}
        for target, kind in _imports(path):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix not in modules and i > 1:
                    continue
                k = kind if i == len(parts) or kind == "typing" else "parent"
                if RANK[k] > RANK[edges.get(prefix, "typing")] or prefix not in edges:
                    edges[prefix] = k
        edges.pop(name, None)
        graph[name] = edges
    return graph


GRAPH = _graph()
OURS = {m for m in GRAPH if m.startswith("automl_runner")}


def _layer(module: str) -> int:
    if module in TOP:
        return TOP[module]
    return LAYERS[module.split(".")[1]]


def _reach(module: str) -> set[str]:
    """Everything `module` runs imports of, directly or through the package's own modules:
    of a parent package only what its module level imports."""
    seen: dict[str, bool] = {}
    todo = [(module, True)]
    while todo:
        current, whole = todo.pop()
        for target, kind in GRAPH.get(current, {}).items():
            if kind == "typing" or (not whole and kind == "lazy"):
                continue
            follow = kind != "parent"
            if seen.get(target, False) or (target in seen and not follow):
                continue
            seen[target] = follow
            if target in GRAPH:
                todo.append((target, follow))
    return set(seen)


def _external(module: str) -> set[str]:
    return {t for t in GRAPH[module] if t not in GRAPH}


def test_the_graph_sees_the_package():
    # a broken reader would make every rule below pass
    assert "automl_runner.experiment.loop" in GRAPH
    assert "automl_runner.engine.ray_executor" in GRAPH["automl_runner.experiment.setup"]
    assert "ray" in _external("automl_runner.engine.ray_executor")
    assert "mlflow" in _reach("automl_runner.experiment.loop")


@pytest.mark.parametrize("module", sorted(OURS))
def test_a_module_imports_only_its_layer_and_those_below(module):
    up = sorted(
        t
        for t in GRAPH[module]
        if t in OURS and t != "automl_runner" and _layer(t) > _layer(module)
    )
    assert not up, f"{module} (layer {_layer(module)}) imports a higher layer: {up}"


@pytest.mark.parametrize("layer", ["worker", "search", "records"])
def test_worker_search_and_records_never_reach_mlflow_hydra_or_omegaconf(layer):
    for module in (m for m in OURS if m.split(".")[1:2] == [layer]):
        reached = {t.split(".")[0] for t in _reach(module)}
        assert not reached & {"mlflow", "hydra", "omegaconf"}, module


def test_the_search_never_reaches_ray():
    for module in (m for m in OURS if m.startswith("automl_runner.search")):
        assert "ray" not in {t.split(".")[0] for t in _reach(module)}, module


def test_records_import_nothing_else_of_the_package():
    assert not {t for t in GRAPH["automl_runner.records"] if t in OURS} - {"automl_runner"}


def test_only_tracking_imports_mlflow_and_only_the_engine_and_the_plugin_core_import_ray():
    for module in GRAPH:
        external = {t.split(".")[0] for t in _external(module)}
        if "mlflow" in external:
            assert module.startswith("automl_runner.tracking"), module
        if "ray" in external:
            assert module.startswith("automl_runner.engine") or module.endswith("._core"), module


def test_nothing_imports_the_entry_points():
    for module in GRAPH:
        if module in TOP or module.startswith("automl_runner.entry"):
            continue
        entry = sorted(t for t in GRAPH[module] if t.startswith("automl_runner.entry"))
        assert not entry, f"{module} imports {entry}"


def test_dictconfig_stops_at_the_setup():
    # below it the config travels as the schema's dataclasses (config.settings)
    allowed = ("automl_runner.config", "automl_runner.entry", "automl_runner.experiment.run")
    for module in OURS - set(TOP):
        if "omegaconf" in {t.split(".")[0] for t in _external(module)}:
            assert module.startswith(allowed), module


def test_no_import_cycle():
    run_time = {m: {t for t, k in GRAPH[m].items() if k != "typing" and t in GRAPH} for m in GRAPH}
    # a package's __init__ importing its own submodules is how packages re-export, not a
    # cycle: leave the edge from a submodule to its parent package out
    for m, targets in run_time.items():
        targets -= {t for t in targets if m.startswith(t + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(run_time[m]):
            if state.get(t) == 1:
                cycle = path[path.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(run_time):
        if m not in state:
            visit(m)


def test_workers_run_without_mlflow_hydra_omegaconf_or_ray_in_the_process():
    # what a Ray worker imports to unpickle an iteration task, minus the engine's own Ray
    code = (
        "import sys\n"
        "import automl_runner.worker.iteration, automl_runner.worker.explain\n"
        "import automl_runner.search.tpe, automl_runner.search.ordering\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'mlflow', 'hydra', 'omegaconf', 'ray'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


AUTOML_KEYS = {f.name for f in dataclasses.fields(AutoMLConfig)}
SCHEMA = PACKAGE / "tracking" / "schema.py"


def _automl_literals(path: Path) -> list[tuple[int, str]]:
    """String literals (and f-strings' leading text) that start with "automl." and are no
    config key: MLflow names, which tracking/schema.py alone spells."""
    out = []
    tree = ast.parse(path.read_text())
    # the text parts of f-strings are read with their f-string below
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
        if text is None or not text.startswith("automl."):
            continue
        field = text[len("automl.") :].split(".")[0].split("=")[0]
        # automl.<key of the automl group>: a config key in a message or an override;
        # "automl.{key}" in an f-string names one of them too
        if field in AUTOML_KEYS or (isinstance(node, ast.JoinedStr) and field == ""):
            continue
        out.append((node.lineno, text))
    return out


def test_no_mlflow_name_is_spelt_outside_the_tracking_schema():
    found = {
        str(path.relative_to(ROOT)): hits
        for path in list(PACKAGE.rglob("*.py")) + list(PLUGIN.rglob("*.py"))
        if path != SCHEMA and (hits := _automl_literals(path))
    }
    assert not found, found


def test_the_literal_check_finds_a_tag_and_passes_a_config_key(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'a = "automl.best_model_uri"\n'
        'b = f"automl.control.cancel.{n}"\n'
        'c = "automl.iterations"\n'
        'd = f"automl.{key}"\n'
    )
    assert [text for _, text in _automl_literals(sample)] == [
        "automl.best_model_uri",
        "automl.control.cancel.",
    ]
