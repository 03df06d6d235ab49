"""The package layout is the architecture: stages in order, nothing imports a later stage.

Every ``soundclass`` import in every module (lazy imports inside functions too) is
read with :mod:`ast` and checked against the stage order documented in
``docs/architecture.md``; no module imports another one's private (``_name``) names.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "soundclass"

# Lower stages never import higher ones.  Same-stage imports are fine.
STAGES = [
    ("errors", "config"),
    ("util",),
    ("audio",),
    ("dsp",),
    ("plots",),
    ("data",),
    ("models",),  # pure nn.Modules (dsp below them): extraction may run a pretrained network
    ("extraction",),
    ("checkpoint",),  # the format inference and training both read and write
    ("inference",),
    ("evaluation",),
    ("training",),
    ("apps",),
    ("cli", "__main__"),
]
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}
WARN_LINES = 800  # a longer module gets a warning: is it still one concept?


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _stage_of(parts: tuple[str, ...]) -> str | None:
    """Stage of a dotted module below ``soundclass`` (``None`` for the package root)."""
    if not parts or parts[0] == "__init__":
        return None
    return parts[0]


def _imported(tree: ast.AST, module_parts: tuple[str, ...]) -> set[tuple[str, ...]]:
    """Dotted ``soundclass`` modules (as parts below the package) imported anywhere in ``tree``."""
    out: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = tuple(alias.name.split("."))
                if parts[0] == "soundclass":
                    out.add(parts[1:])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module_parts[: len(module_parts) - node.level]
                parts = base + tuple((node.module or "").split(".")) if node.module else base
            else:
                parts = tuple((node.module or "").split("."))
                if parts[0] != "soundclass":
                    continue
                parts = parts[1:]
            if parts:
                out.add(parts)
            else:  # from soundclass import x, y: each name is a module or a root attribute
                out.update((alias.name,) for alias in node.names)
    return out


def _parts(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return tuple(rel.parts)


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted(
        str(p.relative_to(PACKAGE)) for p in _modules()
        if _stage_of(_parts(p)) is not None and _stage_of(_parts(p)) not in RANK
    )
    assert unknown == [], f"modules outside the documented stages: {unknown}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_stage(path: Path):
    parts = _parts(path)
    stage = _stage_of(parts)
    if stage is None:  # soundclass/__init__.py may only import the base stage
        allowed = 0
    else:
        allowed = RANK[stage]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    upward = sorted(
        ".".join(("soundclass",) + imp)
        for imp in _imported(tree, parts)
        if imp[0] in RANK and RANK[imp[0]] > allowed
    )
    assert upward == [], f"{path.relative_to(PACKAGE)} (stage {stage!r}) imports later stages: {upward}"


def test_long_modules_are_flagged_not_split():
    """One concept per module, however long (librosa's ``feature/spectral.py``); past WARN_LINES, ask.

    Not a rule that cuts a concept into ``x.py`` + ``x_checks.py`` + ``x_files.py``: a module
    longer than WARN_LINES only gets a warning, for a reader to check that it holds one concept.
    """
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > WARN_LINES}
    for name, n in sorted(long.items()):
        warnings.warn(f"{name} has {n} lines (> {WARN_LINES}): does it still hold one concept?", stacklevel=1)


def test_the_checker_sees_upward_and_lazy_imports():
    # A function-level import of a later stage must be caught, and a relative one too.
    src = "def f():\n    from soundclass.training import train\nfrom ..inference import predict\n"
    found = _imported(ast.parse(src), ("data", "scan"))
    assert ("training",) in found
    assert ("inference",) in found


def _private_imports(tree: ast.AST) -> list[str]:
    """``module.name`` of every ``_name`` imported from a soundclass module (``__dunder__`` names are public)."""
    return sorted(
        f"{'.' * node.level}{node.module or ''}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("soundclass"))
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_private_names_of_another(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = _private_imports(tree)
    assert found == [], f"{path.relative_to(PACKAGE)} imports private names (make them public): {found}"


def test_the_private_import_checker_sees_lazy_and_relative_imports():
    src = ("from soundclass import __version__\nfrom soundclass.extraction import extract as _extract\n"
           "def f():\n    from soundclass.inference.predict import _load\nfrom .axes import _pool\n")
    assert _private_imports(ast.parse(src)) == [".axes._pool", "soundclass.inference.predict._load"]


# --- the import graph: no circles, and lazy imports only where they keep a heavy library out ---------

#: Libraries whose import costs start-up time (measured on the 2-core machine, idle: torch ~1.5 s,
#: scipy.signal/sklearn/onnx ~1 s, matplotlib.pyplot/distributed ~0.5 s) or that are only needed by
#: one command (the web server, the browser tests, ONNX export).  A function may import one of them
#: (or a soundclass module that loads one at import) so that its module stays light.
HEAVY = frozenset({
    "torch", "scipy", "sklearn", "matplotlib", "onnx", "onnxruntime", "ctranslate2", "av",
    "dask", "distributed", "uvicorn", "starlette", "playwright",
})

#: Libraries that may be missing (not in ``[project] dependencies``): imported where used, so the
#: rest works without them.
OPTIONAL = frozenset({"dask", "distributed", "playwright"})

#: Folders whose modules may import heavy things inside functions without listing them:
#: ``soundclass --help`` and ``soundclass <command> --help`` must not load torch.
START_UP = ("cli", "apps")

#: The lazy imports of the other folders, by module and imported name, with the reason.
#: Each must still be needed (the test fails on a stale entry) and must keep a heavy
#: library out of its module (a lazy import of a light module is a cycle dodged or noise).
_PLOTS = "matplotlib only when a picture is drawn"
_TORCH = "torch only when a model runs"
LAZY_ALLOWED: dict[str, dict[str, str]] = {
    "data/scan_writers.py": {"soundclass.plots": f"scan writes its pictures on request: {_PLOTS}"},
    "data/splits.py": {"sklearn": "scikit-learn's splitters (about 1 s to import) only for a split"},
    "evaluation/calibration_report.py": {
        "soundclass.plots": f"reliability.png: {_PLOTS}",
        "soundclass.plots.calibration": f"reliability.png: {_PLOTS}",
    },
    "evaluation/evaluate.py": {"soundclass.plots": f"confusion.png, history.png: {_PLOTS}"},
    "inference/backends.py": {"onnxruntime": "only the onnx backend runs onnxruntime"},
    "models/backbone_runtime.py": {
        "onnxruntime": "only when a backbone graph is built or run; every model module imports this one",
    },
    "inference/export.py": {
        "onnx": "reading and checking a graph; tracing needs only torch",
        "onnxruntime": "checking an exported graph",
    },
    "inference/windows.py": {  # parse_windows, default_window_seconds serve the CLI before any model
        "soundclass.checkpoint.format": _TORCH,
        "soundclass.extraction.extract": _TORCH,
        "soundclass.inference.predictor": _TORCH,
    },
    "training/classical.py": {"sklearn": "scikit-learn (about 1 s to import) only for a classical fit"},
    "util/executors.py": {  # the pool runner is imported by light modules (data.scan, extraction)
        "torch": "single_threaded limits torch's threads only if torch is already loaded",
        "distributed": "dask executors are an extra (soundclass[deploy])",
    },
}

#: Modules being rewritten on another branch, whose needless lazy imports move to the top once it
#: is merged (remove the entry then): cycles are checked in them all the same.
PENDING: dict[str, str] = {}


def _module_table() -> dict[tuple[str, ...], Path]:
    """Dotted module (parts below ``soundclass``; a package is its folder) -> file."""
    table = {}
    for path in _modules():
        parts = _parts(path)
        table[parts[:-1] if parts[-1] == "__init__" else parts] = path
    return table


MODULES = _module_table()


def _lazy_exports(table) -> dict[tuple[str, ...], tuple[str, ...]]:
    """``(package..., name) -> submodule`` of packages that export names on first use.

    Such a package (``apps/serve``) lists them in a module-level ``_EXPORTS = {"module": (names...)}``
    and imports the module in ``__getattr__``: ``from package import name`` imports that module.
    """
    out = {}
    for module, path in table.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets)):
                for sub, names in ast.literal_eval(node.value).items():
                    out.update({module + (name,): module + (sub,) for name in names})
    return out


LAZY_EXPORTS = _lazy_exports(MODULES)


def _known(parts: tuple[str, ...], table) -> tuple[str, ...]:
    """The longest prefix of ``parts`` that is a module (``from pkg import name`` names an attribute)."""
    while parts and parts not in table:
        parts = parts[:-1]
    return parts


def _import_records(tree: ast.AST, module: tuple[str, ...], table, *, is_package: bool = False):
    """Every import of ``tree`` as ``(target, lazy, line)``.

    ``target`` is a soundclass module (a tuple of parts, ``()`` for the package root) or an
    external top-level name (a str).  ``lazy``: the import runs inside a function.
    """
    package = module if is_package else module[:-1]
    inside = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn)}
    out = []
    for node in ast.walk(tree):
        lazy = id(node) in inside
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = tuple(alias.name.split("."))
                target = _known(parts[1:], table) if parts[0] == "soundclass" else parts[0]
                out.append((target, lazy, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                parts = base + (tuple(node.module.split(".")) if node.module else ())
            else:
                parts = tuple((node.module or "").split("."))
                if parts[0] != "soundclass":
                    out.append((parts[0], lazy, node.lineno))
                    continue
                parts = parts[1:]
            for alias in node.names:  # from package import submodule: an edge to the submodule
                sub = parts + (alias.name,)
                sub = LAZY_EXPORTS.get(sub, sub)
                out.append((sub if sub in table else _known(parts, table), lazy, node.lineno))
    return [(t, lazy, line) for t, lazy, line in out if t != module]


def _graph(table) -> dict[tuple[str, ...], list[tuple[object, bool, int]]]:
    return {
        module: _import_records(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), module,
                                table, is_package=path.name == "__init__.py")
        for module, path in table.items()
    }


def _cycles(graph) -> list[list[tuple[str, ...]]]:
    """Strongly connected components of more than one module (lazy imports are edges too)."""
    edges = {m: sorted({t for t, _, _ in recs if isinstance(t, tuple) and t in graph}) for m, recs in graph.items()}
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    found = []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _heavy_at_import(graph) -> dict[tuple[str, ...], frozenset[str]]:
    """The heavy libraries each module loads when it is imported (module-level imports, transitively)."""
    top = {m: [t for t, lazy, _ in recs if not lazy] for m, recs in graph.items()}
    out = {}
    for module in graph:
        seen, todo, heavy = set(), [module], set()
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            for i in range(len(m)):  # importing a.b.c runs the package a/__init__ and a.b/__init__ first
                todo.append(m[:i])
            for t in top.get(m, ()):
                if isinstance(t, tuple):
                    todo.append(t)
                elif t in HEAVY:
                    heavy.add(t)
        out[module] = frozenset(heavy)
    return out


def _name(target) -> str:
    return target if isinstance(target, str) else ".".join(("soundclass",) + target)


def _path_name(module: tuple[str, ...]) -> str:
    return str(MODULES[module].relative_to(PACKAGE))


def _lazy_imports(graph, heavy):
    """``(module file, imported name, line, heavy libraries it keeps out of the module)`` of each lazy import."""
    out = []
    for module, recs in sorted(graph.items()):
        for target, lazy, line in sorted(set(recs), key=lambda r: (r[2], _name(r[0]))):
            if lazy:
                brings = frozenset({target} & (HEAVY | OPTIONAL)) if isinstance(target, str) else heavy[target]
                out.append((_path_name(module), _name(target), line, brings - heavy[module]))
    return out


def test_no_import_cycles():
    """Nothing imports in a circle, inside a folder or across: an import placed in a function to dodge
    a cycle is still an edge of it."""
    cycles = [" <-> ".join(_name(m) for m in comp) for comp in _cycles(_graph(MODULES))]
    assert cycles == [], f"import cycles: {cycles}"


def test_lazy_imports_keep_a_heavy_library_out():
    """An import inside a function is allowed only where it keeps a heavy library out of a light module:
    in ``cli/`` and ``apps/`` (start-up time), or listed in LAZY_ALLOWED with its reason."""
    graph = _graph(MODULES)
    heavy = _heavy_at_import(graph)
    needless, unlisted = [], []
    for path, name, line, keeps_out in _lazy_imports(graph, heavy):
        where = f"{path}:{line} imports {name}"
        if not keeps_out:
            if path not in PENDING:
                needless.append(where)
        elif path.split("/")[0] not in START_UP and name not in LAZY_ALLOWED.get(path, {}):
            unlisted.append(f"{where} (keeps {', '.join(sorted(keeps_out))} out)")
    assert needless == [], f"lazy imports that keep nothing heavy out (import at the top): {needless}"
    assert unlisted == [], f"lazy imports not in LAZY_ALLOWED (add them with a reason): {unlisted}"


def test_the_lazy_import_allow_list_is_current():
    graph = _graph(MODULES)
    used = {(path, name) for path, name, _, keeps_out in _lazy_imports(graph, _heavy_at_import(graph)) if keeps_out}
    stale = sorted(f"{path}: {name}" for path, names in LAZY_ALLOWED.items() for name in names
                   if (path, name) not in used)
    assert stale == [], f"LAZY_ALLOWED entries with no such lazy import (remove them): {stale}"
    assert all(reason.strip() for names in LAZY_ALLOWED.values() for reason in names.values())


def test_the_cycle_checker_sees_a_cycle_dodged_by_a_lazy_import():
    sources = {
        ("training", "a"): "from soundclass.training import b\n",
        ("training", "b"): "def f():\n    from soundclass.training.a import x\n",
        ("training", "c"): "import numpy\n",
        ("training",): "",
    }
    table = dict.fromkeys(sources)
    graph = {m: _import_records(ast.parse(src), m, table, is_package=m == ("training",))
             for m, src in sources.items()}
    assert _cycles(graph) == [[("training", "a"), ("training", "b")]]
    assert (("training", "a"), True, 2) in graph[("training", "b")]
    assert ("numpy", False, 1) in graph[("training", "c")]


# --- docs/architecture.md names every module ------------------------------------------------------

ARCHITECTURE = PACKAGE.parents[1] / "docs" / "architecture.md"


def _documented_names() -> dict[str, set[str]]:
    """Backquoted names of each ``## `folder/`...`` section of docs/architecture.md (``""``: the base)."""
    sections: dict[str, set[str]] = {}
    folders: list[str] = []
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            folders = [f.rstrip("/") for f in re.findall(r"`([a-z_]+)/`", line)]
            if re.search(r"`[a-z_]+\.py`", line) and not folders:
                folders = [""]
            continue
        for folder in folders:
            sections.setdefault(folder, set()).update(
                n.removesuffix(".py").rstrip("/") for n in re.findall(r"`([A-Za-z_][\w./]*)", line))
    return sections


def test_the_architecture_names_every_module():
    """Every module is named (`` `name` `` or `` `name.py` ``) in the section of its stage folder."""
    sections = _documented_names()
    missing = []
    for path in _modules():
        parts = _parts(path)
        folder = parts[0] if len(parts) > 1 else ""
        below = parts[1:] if folder else parts  # apps/serve/app: `serve/app` or `app`
        below = below[:-1] if below[-1] == "__init__" else below  # a package is its folder
        if not below:  # a stage folder (or the package): its section
            continue
        names = sections.get(folder, set())
        if "/".join(below) not in names and below[-1] not in names:
            missing.append(str(path.relative_to(PACKAGE)))
    assert missing == [], f"modules docs/architecture.md does not name in their stage's section: {missing}"


def test_the_lazy_import_checker_tells_a_heavy_library_kept_out_from_a_needless_one():
    sources = {
        ("data", "light"): "def f():\n    import sklearn\n    from soundclass.data import heavy\n",
        ("data", "heavy"): "import torch\ndef g():\n    import sklearn\n    from soundclass.data import light\n",
        ("data",): "",
        (): "",
    }
    table = dict.fromkeys(sources)
    graph = {m: _import_records(ast.parse(src), m, table, is_package=len(m) < 2) for m, src in sources.items()}
    heavy = _heavy_at_import(graph)
    assert heavy[("data", "light")] == frozenset() and heavy[("data", "heavy")] == {"torch"}
    kept = {(m, _name(t)): ({t} & HEAVY if isinstance(t, str) else heavy[t]) - heavy[m]
            for m, recs in graph.items() for t, lazy, _ in recs if lazy}
    assert kept == {
        (("data", "light"), "sklearn"): {"sklearn"},
        (("data", "light"), "soundclass.data.heavy"): {"torch"},
        (("data", "heavy"), "sklearn"): {"sklearn"},
        (("data", "heavy"), "soundclass.data.light"): set(),  # needless: at the top, or a dodged cycle
    }
