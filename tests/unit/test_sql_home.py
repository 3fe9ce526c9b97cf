"""Every SQL statement dcctl runs or shows lives in dcctl/pg/queries.py, named. The lab keeps its
own setup SQL (roles, the demo's and the test writer's tables): it never runs against a site."""
import ast
import doctest
import re
from pathlib import Path

import dcctl.pg.queries

PACKAGE = Path(__file__).parents[2] / "dcctl"
HOME = PACKAGE / "pg" / "queries.py"
EXCLUDED = [PACKAGE / "lab"]
# CHECKPOINT only as a whole statement: "CHECKPOINT while writes continue" is a step description.
LOOKS_LIKE_SQL = re.compile(r"\s*((SELECT|INSERT|UPDATE|DELETE|ALTER|CREATE|DROP)\s|CHECKPOINT\s*;?\s*$)")


def docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def sql_literals(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """'file:line: text' for each string literal (or f-string) that starts like a SQL statement."""
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            for part in node.values:  # the f-string is reported once, by its leading text
                skip.add(id(part))
            head = node.values[0] if node.values else None
            text = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        else:
            continue
        if LOOKS_LIKE_SQL.match(text):
            hits.append(f"{path.relative_to(root)}:{node.lineno}: {' '.join(text.split())[:60]}")
    return hits


def scanned_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if p != HOME and not any(p.is_relative_to(excluded) for excluded in EXCLUDED)]


def test_sql_lives_in_pg_queries():
    stray = [hit for path in scanned_files() for hit in sql_literals(path)]
    assert not stray, "SQL outside dcctl/pg/queries.py (name it there):\n" + "\n".join(stray)


def test_the_scan_finds_sql_in_every_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""SELECT in a docstring is prose."""\n'
                      'A = "SELECT 1"\n'
                      'B = ("INSERT INTO t "\n     "VALUES (1)")\n'
                      'C = f"ALTER SYSTEM SET x = {1}"\n'
                      'D = "\\nCHECKPOINT\\n"\n'
                      'E = "CHECKPOINT while writes continue"\n'
                      'F = "Selected: SELECTED"\n')
    hits = [hit.split(": ", 1)[1] for hit in sql_literals(sample, tmp_path)]
    assert hits == ["SELECT 1", "INSERT INTO t VALUES (1)", "ALTER SYSTEM SET x =", "CHECKPOINT"]


def test_queries_doctests():
    result = doctest.testmod(dcctl.pg.queries)
    assert result.attempted > 0 and result.failed == 0
