"""The docs say what the code does: the README's Python blocks run as written, every name a doc
imports is importable where it shows it, every tool a doc calls exists, and the prose stays a guide."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "projects").glob("*/README.md"))]


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("block", _python_blocks(ROOT / "README.md"))
def test_readme_python_blocks_run(block):
    exec(compile(block, "README.md", "exec"), {})


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_a_doc_shows_works(doc):
    for block in _python_blocks(doc):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), str(doc), "exec"), {})


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_tool_and_config_a_doc_names_exists(doc):
    text = doc.read_text()
    for path in set(re.findall(r"\b((?:tools|benchmarks|configs)/[\w./-]+\.(?:py|yaml))", text)):
        assert (ROOT / path).is_file() or (doc.parent / path).is_file(), f"{doc.name} names {path}: no such file"
    for link in re.findall(r"\]\(((?!https?:)[^)#\s]+)", text):
        assert (doc.parent / link).exists(), f"{doc.name} links {link}, which does not exist"


def test_prose_is_a_guide_not_a_notebook():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert sum(len(p.read_text().encode()) for p in DOCS) <= 70_000


def test_every_test_bad_inputs_names_exists():
    text = (ROOT / "docs" / "bad_inputs.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| input")]
    for row in rows:
        if set(row) <= set("|-"):
            continue
        cited = re.findall(r"`((?:projects/\w+/tests/|)test_\w+)(?:::(\w+))?`|`\.\.\.(_\w+)`", row)
        assert cited, f"a row of bad_inputs.md names no test: {row[:80]}"
        module = None
        for path, test, suffix in cited:
            if path:
                module = (ROOT / path).with_suffix(".py") if "/" in path else ROOT / "tests" / f"{path}.py"
            source = module.read_text()
            names = re.findall(r"^def (test_\w+)", source, re.M)
            if test:
                assert test in names, f"{module.name} has no {test}"
            elif suffix:
                assert any(n.endswith(suffix) for n in names), f"{module.name} has no test ending {suffix}"
