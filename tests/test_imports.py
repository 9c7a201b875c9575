"""The import graph of tsplugin + converters, read from the source (ast): no cycles, no import that
runs back up the layers, lazy imports only where a module says why; and the torch-free entry points
stay torch-free, and any import order works (in subprocesses).

The layers, lowest first; a module imports its own layer or lower ones, never higher:
  0 contract     tsplugin (the package and its top-level torch-free modules not named below, e.g. a
                 registry helper), tsplugin.processing (placeholders, profiles, positions, series
                 values, encodability), tsplugin.jsonl, tsplugin.synth.labels (the labels schema):
                 torch-free, imported by everyone
  1 files        tsplugin.checkpoints.layouts / .weights / .tokenizer_files: what a checkpoint directory holds, read by
                 model loaders (no model class needed); converters (tsconvert): only the contract
  2 models       tsplugin.models (configs, modeling, encoders, projectors)
  3 tools        tsplugin.build, planner, eval, checkpoints.inspect, chat, forecast, monitor,
                 nan_guard, quickstart, synth (may use each other and converters' CSV reader and writer)
  4 llamafactory tsplugin.llamafactory (hooks, data, plugin, engine), tsplugin.webui, tsplugin.vllm
                 (the vLLM model plugin: serving, like LLaMA-Factory's engines)
  5 entry        tsplugin.cli, tsplugin._bootstrap (the .pth start-up hook)
Within a layer any direction is allowed; the cycle check keeps it acyclic. `converters` may import
only `tsplugin.processing`, `tsplugin.jsonl`, `tsplugin.registry` (the generic registry helper),
`tsplugin.userfiles` (opening a file a user named: the kind of a non-regular file, the bounded read),
`tsplugin.synth.labels` (the labels schema `tsconvert describe` writes) and, for describe alone,
`tsplugin.synth.qa` and `tsplugin.synth.attributes` (describe asks synth's questions and grades noise
on synth's signal scale; both are numpy-only and import no converters module, so no cycle).

Function-level (lazy) imports count as edges too. One of a tsplugin/converters module is allowed
when its line, an import line just above it or a comment line above those says why (`# lazy: ...`),
or the module declares a reason for all of them in one line (`# lazy imports: ...`). Imports under
`if TYPE_CHECKING:` and `if __name__ == "__main__":` are not edges. A module importing its own
parent package is not an edge (Python always initialises the parent first).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tsplugin", "converters")

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("contract", ("tsplugin", "tsplugin.processing", "tsplugin.jsonl", "tsplugin.synth.labels")),
    ("files", ("tsplugin.checkpoints.layouts", "tsplugin.checkpoints.weights", "tsplugin.checkpoints.tokenizer_files",
               "converters")),
    ("models", ("tsplugin.models",)),
    ("tools", ("tsplugin.build", "tsplugin.planner", "tsplugin.eval", "tsplugin.checkpoints", "tsplugin.chat",
               "tsplugin.forecast", "tsplugin.monitor", "tsplugin.nan_guard", "tsplugin.quickstart", "tsplugin.synth")),
    ("llamafactory", ("tsplugin.llamafactory", "tsplugin.webui", "tsplugin.vllm")),
    ("entry", ("tsplugin.cli", "tsplugin._bootstrap")),
]
# Deliberate upward edges: the start-up hook hands each watched upstream module to the hooks;
# `python -m tsplugin.eval.forecast` runs the one `tsplugin eval forecast` parser.
ALLOWED_UPWARD = {("tsplugin._bootstrap", "tsplugin.llamafactory.hooks"), ("tsplugin.eval.forecast", "tsplugin.cli")}
CONVERTERS_MAY_IMPORT = ("tsplugin.processing", "tsplugin.jsonl", "tsplugin.registry", "tsplugin.userfiles", "tsplugin.synth.labels",
                         "tsplugin.synth.qa", "tsplugin.synth.attributes")
MODULE_REASON = re.compile(r"^# lazy imports: \S", re.M)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    lazy: bool
    line: int
    justified: bool


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _skipped_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = ast.unparse(node.test)
    return "TYPE_CHECKING" in test or test.replace("'", '"') == '__name__ == "__main__"'


def _justified(lines: list[str], lineno: int) -> bool:
    """`# lazy:` on the import's line, on an import line just above it, or on a comment line right above them."""
    i = lineno - 1
    while True:
        if "# lazy:" in lines[i]:
            return True
        if i == 0 or not lines[i - 1].strip().startswith(("from ", "import ", "# lazy:")):
            return False
        i -= 1


def edges(known: dict[str, Path]) -> list[Edge]:
    out = []
    for name, path in known.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        whole_module = bool(MODULE_REASON.search(text))
        is_package = path.name == "__init__.py"

        def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
            if isinstance(node, ast.Import):
                return [a.name for a in node.names]
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            return [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]

        def visit(node: ast.AST, lazy: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if _skipped_block(child):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in targets(child):
                        if target.split(".")[0] not in PACKAGES:
                            continue
                        while target not in known and "." in target:
                            target = target.rsplit(".", 1)[0]
                        if target == name or name.startswith(target + "."):
                            continue  # itself, or its parent package
                        justified = not lazy or whole_module or _justified(lines, child.lineno)
                        out.append(Edge(name, target, lazy, child.lineno, justified))
                visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(ast.parse(text), False)
    return out


def layer_of(module: str) -> int:
    best = (-1, -1)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[1]:
                best = (index, len(prefix))
    assert best[0] >= 0, f"{module} is in no layer; add it to LAYERS (and to the docstring)"
    return best[0]


KNOWN = modules()
EDGES = edges(KNOWN)


def test_the_graph_is_read():
    assert len(KNOWN) > 90 and len(EDGES) > 200
    assert any(e.source == "tsplugin.llamafactory.mm_plugin" and e.target == "tsplugin.processing" for e in EDGES)
    assert any(e.lazy for e in EDGES)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        graph.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    detail = [[f"{e.source} -> {e.target} (line {e.line}{', lazy' if e.lazy else ''})" for e in EDGES
               if e.source in c and e.target in c] for c in cycles]
    assert not cycles, detail


def test_no_import_runs_back_up_the_layers():
    wrong = []
    for e in EDGES:
        if e.source.startswith("converters.") or e.source == "converters":
            if e.target.startswith("tsplugin") and not any(e.target == p or e.target.startswith(p + ".") for p in CONVERTERS_MAY_IMPORT):
                wrong.append(f"{e.source} -> {e.target} (line {e.line}): converters import only {CONVERTERS_MAY_IMPORT}")
            continue
        if layer_of(e.target) > layer_of(e.source) and (e.source, e.target) not in ALLOWED_UPWARD:
            wrong.append(f"{e.source} ({LAYERS[layer_of(e.source)][0]}) -> {e.target} ({LAYERS[layer_of(e.target)][0]}) line {e.line}")
    assert not wrong, "\n".join(wrong)


def test_lazy_imports_say_why():
    silent = [f"{KNOWN[e.source].relative_to(ROOT)}:{e.line}: {e.target}" for e in EDGES if not e.justified]
    assert not silent, "move these imports to the top, or say why they wait (`# lazy: ...`):\n" + "\n".join(silent)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)


TORCH_FREE = ("tsplugin.cli", "tsplugin.planner.cli", "tsplugin.planner.estimate", "tsplugin.planner.fit",
              "tsplugin.checkpoints.inspect", "tsplugin.processing", "tsplugin.processing.positions",
              "converters.cli", "converters.convert", "converters.validate", "converters.forecast",
              "converters.describe.pipeline",
              "tsplugin.vllm.platform")  # vLLM loads its platform plugins before anything else


def test_cli_planner_inspect_processing_and_converters_import_no_torch():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in TORCH_FREE)
            + "from tsplugin.cli import build_parser\nbuild_parser()\n"  # what `tsplugin --help` imports: every command module
            + "heavy = sorted(m for m in ('torch', 'transformers', 'llamafactory') if m in sys.modules)\nprint(heavy)\n")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_plugin_imported_before_llamafactory_registers_itself_and_the_templates():
    """The usual order (LLaMA-Factory first, the hooks import the plugin) runs in every training test."""
    code = ("import tsplugin.llamafactory.mm_plugin\n"
            "from llamafactory.data import mm_plugin, template\n"
            "from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin\n"
            "assert mm_plugin.PLUGINS['timeseries'] is TimeSeriesPlugin\n"
            "assert isinstance(template.TEMPLATES['chatts'].mm_plugin, TimeSeriesPlugin)\n"
            "print('ok')\n")
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
