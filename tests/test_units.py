"""One unit of work per service (STYLE 3, issue 10): services commit only through
portal.db.write, so no module of the portal calls `.commit(` but portal/db.py. Read with ast:
a comment or a string that mentions a commit does not count, any call spelled `.commit(` does."""

import ast
from pathlib import Path

PORTAL = Path(__file__).resolve().parents[1] / "portal"
UNIT_OF_WORK = PORTAL / "db.py"


def commits_in(source: str) -> list[int]:
    """The lines of `source` that call a `.commit(` method."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "commit")


def test_no_module_commits_but_the_unit_of_work():
    found = [f"portal/{path.relative_to(PORTAL)}:{line}" for path in sorted(PORTAL.rglob("*.py"))
             if path != UNIT_OF_WORK
             for line in commits_in(path.read_text())]
    assert found == []


def test_the_unit_of_work_itself_is_read():
    assert commits_in(UNIT_OF_WORK.read_text())  # the check would notice commits where they are


def test_any_call_of_commit_counts_and_a_mention_does_not():
    source = "def f(session):\n    session.commit()\n    g().session.commit()\n# session.commit()\nx = 'session.commit()'\n"
    assert commits_in(source) == [2, 3]
