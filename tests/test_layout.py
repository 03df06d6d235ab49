"""The package layout is the architecture: stages in order, nothing imports a later stage.

Every ``soundclass`` import in every module (lazy imports inside functions too) is
read with :mod:`ast` and checked against the stage order documented in
``docs/architecture.md``; no module imports another one's private (``_name``) names.
"""

from __future__ import annotations

import ast
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
