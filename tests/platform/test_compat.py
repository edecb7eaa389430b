"""Private APIs of dependencies are used in one place only: pipelines/platform/compat.py."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "pipelines" / "platform" / "compat.py"


def _private_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        found += [m for m in modules if any(part.startswith("_") for part in m.split(".")[1:])]
        if isinstance(node, ast.Attribute) and node.attr == "_get_provider":
            found.append("FeatureStore._get_provider")
    return found


def test_private_apis_only_in_compat():
    uses = {
        str(path.relative_to(ROOT)): _private_uses(path)
        for folder in ("pipelines", "serving")
        for path in (ROOT / folder).rglob("*.py")
        if path != COMPAT
    }
    assert {p: u for p, u in uses.items() if u} == {}
    assert _private_uses(COMPAT)  # the check can see them: compat.py has its share
