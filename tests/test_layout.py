"""Size limits in the library and the training package: no function (methods included) over 80 lines,
no file over 500, so each stays readable in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twingan", "train")
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 500


def oversized(root: Path = ROOT, packages=PACKAGES) -> list[str]:
    """One line for each file over MAX_FILE_LINES and each function or method over MAX_FUNCTION_LINES
    (from `def` to its last line, as ast counts: end_lineno - lineno + 1) under the packages."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name, text = path.relative_to(root).as_posix(), path.read_text()
            if (lines := len(text.splitlines())) > MAX_FILE_LINES:
                found.append(f"{name}: {lines} lines (at most {MAX_FILE_LINES})")
            for node in ast.walk(ast.parse(text, name)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if (lines := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                        found.append(f"{name}::{node.name} (line {node.lineno}): {lines} lines (at most {MAX_FUNCTION_LINES})")
    return found


def test_no_function_or_file_is_over_the_limits():
    found = oversized()
    assert not found, "split these:\n" + "\n".join(found)


def _body(lines: int, indent: int) -> str:
    return "".join(f"{' ' * indent}x{i} = {i}\n" for i in range(lines))


def test_a_long_method_and_a_long_file_are_found(tmp_path):
    package = tmp_path / "train"
    package.mkdir()
    (package / "fits.py").write_text("def f():\n" + _body(MAX_FUNCTION_LINES - 1, 4))  # 80 lines: allowed
    (package / "method.py").write_text("class A:\n    async def m(self):\n" + _body(MAX_FUNCTION_LINES, 8))  # 81
    (package / "nested.py").write_text("def outer():\n    def inner():\n" + _body(MAX_FUNCTION_LINES, 8))
    (package / "big.py").write_text("x = 0\n" * (MAX_FILE_LINES + 1))
    assert oversized(tmp_path, ("train",)) == [
        f"train/big.py: {MAX_FILE_LINES + 1} lines (at most {MAX_FILE_LINES})",
        f"train/method.py::m (line 2): {MAX_FUNCTION_LINES + 1} lines (at most {MAX_FUNCTION_LINES})",
        f"train/nested.py::outer (line 1): {MAX_FUNCTION_LINES + 2} lines (at most {MAX_FUNCTION_LINES})",
        f"train/nested.py::inner (line 2): {MAX_FUNCTION_LINES + 1} lines (at most {MAX_FUNCTION_LINES})"]
