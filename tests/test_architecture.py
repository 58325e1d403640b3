"""The house's rules, checked on the code itself: the core stays free of the UI, objects keep their insides, and
heavy imports (TensorFlow, Ray) happen only where they are needed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "dcnn_core").rglob("*.py")), *sorted((ROOT / "ui").glob("*.py")), *sorted((ROOT / "pages").glob("*.py"))]
STREAMLIT_INTERNALS = ROOT / "ui" / "streamlit_private.py"  # the one place allowed to touch Streamlit's insides


def _private_reaches(path: Path) -> list[str]:
    """``x._y`` where ``x`` is not ``self`` or ``cls`` (dunders aside): another object's insides."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{name}")
    return found


def test_no_code_reaches_into_another_objects_private_attributes():
    reaches = [reach for path in SOURCES if path != STREAMLIT_INTERNALS for reach in _private_reaches(path)]
    assert reaches == []


def test_the_core_never_imports_streamlit():
    offenders = []
    for path in (ROOT / "dcnn_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.append(node.module)
            if any(module.split(".")[0] == "streamlit" for module in modules):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_training_door_and_the_room_rules_load_without_tensorflow_or_ray():
    probe = (
        "import sys; import ui.resources, dcnn_core.training.engines.local, dcnn_core.training.engines.ray_engine, "
        "dcnn_core.room.rules, dcnn_core.design.plan; "
        "print(sorted(name for name in ('tensorflow', 'keras', 'ray') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
