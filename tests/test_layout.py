"""The package layout is the architecture: capability subpackages, imports only downward, short modules."""

from __future__ import annotations

import ast
from pathlib import Path

import steerlab

PACKAGE = Path(steerlab.__file__).parent
# Bottom to top: a module may import from its own layer and the layers below it, never above.
LAYERS = ("core", "model", "steer", "read", "report", "validate", "export", "serve", "cli")


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path) -> set[str]:
    """Every steerlab module named by an import in ``path``, the lazy ones inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("steerlab"):
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("steerlab")}
    return found


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(("steerlab", *path.relative_to(PACKAGE).with_suffix("").parts))
        out[dotted.removesuffix(".__init__")] = path
    return out


def test_every_module_lives_in_a_capability_subpackage() -> None:
    loose = [m for m in modules() if layer(m) is None and m not in {"steerlab", "steerlab.__main__"}]
    assert not loose, f"modules outside {LAYERS}: {loose}"


def test_imports_only_go_down() -> None:
    upward = []
    for module, path in modules().items():
        mine = layer(module)
        for target in imports(path):
            theirs = layer(target)
            if target == "steerlab":  # the facade: only the version and the lazy-name helper live there
                assert mine is not None, module
                continue
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def length(node: ast.AST) -> int:
    return (node.end_lineno or node.lineno) - node.lineno + 1 if isinstance(node, ast.stmt) else 0


def test_modules_and_functions_are_short() -> None:
    long_modules = [f"{m} ({n})" for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 300]
    long_functions = [
        f"{m}.{node.name} ({length(node)})"
        for m, p in modules().items()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and length(node) > 60
    ]
    assert not long_modules, f"modules over 300 lines: {long_modules}"
    assert not long_functions, f"functions over 60 lines: {long_functions}"
