"""The library's layers: data flows counts -> validated AnnData -> normalized AnnData -> scores -> models +
safeguards -> report, and no module imports one from a layer above its own (issue 12's "house")."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ctra"

# lowest first; a module may import only from its own layer or lower ones
LAYERS = (
    ("errors", "config", "versions"),
    ("io", "genesets", "results", "endpoints", "example"),
    ("design",),
    ("validate", "validate_association", "validate_outcomes", "normalize"),
    ("scoring",),
    ("models", "mediation"),
    ("safeguards", "power", "synthesis", "simulate_outcomes"),
    ("report", "report_outcomes", "planning_report"),
    ("stages",),
    ("cli", "__main__"),
)
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    """The top-level name under ``ctra`` (``models.mixed`` -> ``models``)."""
    return module.split(".")[0]


def _imports(path: Path, root: Path = SRC) -> set[str]:
    """The ctra modules ``path`` (a file under ``root``, the package) imports, relative or absolute, as
    names under ``ctra``."""
    package = path.relative_to(root).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                found.add(".".join(base + ([node.module] if node.module else [node.names[0].name])))
            elif node.module and node.module.startswith("ctra."):
                found.add(node.module[len("ctra.") :])
        elif isinstance(node, ast.Import):
            found |= {a.name[len("ctra.") :] for a in node.names if a.name.startswith("ctra.")}
    return found


def _module(path: Path) -> str:
    return _top(".".join(path.relative_to(SRC).with_suffix("").parts))


def test_every_module_has_a_layer():
    modules = {_module(path) for path in SRC.rglob("*.py")} - {"__init__"}
    assert modules <= set(LAYER_OF), f"modules without a layer in LAYERS: {sorted(modules - set(LAYER_OF))}"


def test_no_module_imports_one_above_its_layer():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == SRC:
            continue
        level = LAYER_OF[_module(path)]
        for target in _imports(path):
            if LAYER_OF[_top(target)] > level:
                upward.append(f"{path.relative_to(SRC)} imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_check_sees_upward_imports(tmp_path):
    """The check itself: relative imports from a subpackage and absolute ones inside a function are found."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "gee.py").write_text("from ..report import SECTIONS\nfrom . import mixed\n")
    (tmp_path / "design.py").write_text(
        "def f():\n    import ctra.stages\n    from ctra.models.mixed import fit_reml\n"
    )
    assert _imports(tmp_path / "models" / "gee.py", tmp_path) == {"report", "models.mixed"}
    assert _imports(tmp_path / "design.py", tmp_path) == {"stages", "models.mixed"}
