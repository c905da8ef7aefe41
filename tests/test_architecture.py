"""The rules of docs/ARCHITECTURE.md, checked on the source: layers import downwards only, no
module imports another's private names, and files stay small (the few still too long have a
ceiling until they are split)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "panonet"

# Layer of each top-level part of the package (docs/ARCHITECTURE.md); imports go to lower ones.
LAYERS = {
    "__init__": 0,  # the package's own __init__ (it imports ops)
    "ops": 0,
    "_atomic": 0,
    "sync_points": 0,
    "cuda_graph": 0,
    "_C": 0,
    "data": 1,
    "models": 1,
    "viz": 2,
    "evaluation": 3,
    "inference": 4,
    "train": 4,
    "demo": 5,
    "bench": 5,
    "export": 5,
    "cli": 6,
    "__main__": 7,
}
MAX_LINES = 500
# Files still over MAX_LINES, each with a ceiling it may not pass, until they are split.
TOO_LONG: dict[str, int] = {}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def imports(path: Path):
    """(module imported, names imported from it) of every panonet import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "panonet" or node.module.startswith("panonet."):
                yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("panonet."):
                    yield alias.name, []


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize(
    "path, parts",
    list(modules()),
    ids=lambda v: str(v.relative_to(PACKAGE)) if isinstance(v, Path) else "",
)
def test_imports_go_downwards_and_not_to_private_names(path, parts):
    own = parts[0]
    assert own in LAYERS, f"{own} has no layer in tests/test_architecture.py (and the docs)"
    own_module = "panonet." + ".".join(p for p in parts if p != "__init__")
    for module, names in imports(path):
        target = part_of(module)
        if target == "":  # `from panonet import _C` / the package itself
            assert all(n in ("_C",) or not n.startswith("_") for n in names), (path, names)
            continue
        if target != own:
            assert LAYERS[target] < LAYERS[own], f"{own_module} imports {module} (a higher layer)"
        if module != own_module:
            private = [n for n in names if n.startswith("_") and n not in ("_C", "_extension")]
            assert not private, f"{own_module} imports private names {private} from {module}"


def test_files_stay_small():
    too_long = {}
    for folder, patterns in (("python", ("*.py",)), ("csrc", ("*.cpp", "*.cu", "*.h", "*.cuh"))):
        for pattern in patterns:
            for path in (ROOT / folder).rglob(pattern):
                rel = path.relative_to(ROOT).as_posix()
                n = len(path.read_text(encoding="utf-8").splitlines())
                if n > TOO_LONG.get(rel, MAX_LINES):
                    too_long[rel] = n
    assert not too_long, f"split these files (over {MAX_LINES} lines or their ceiling): {too_long}"
    for rel in TOO_LONG:
        assert (ROOT / rel).exists(), f"{rel} is gone: remove it from TOO_LONG"
