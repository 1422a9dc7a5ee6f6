"""The faces keep to themselves (STYLE 13): the pages import nothing of the API but the OpenAPI
document their reference page shows."""

import ast
from pathlib import Path

PORTAL = Path(__file__).resolve().parents[2] / "portal"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_pages_import_nothing_of_the_api_but_its_openapi_document():
    found = {(path.name, name) for path in (PORTAL / "web").glob("*.py") for name in imports_of(path)
             if name == "portal.api" or name.startswith("portal.api.")}
    assert found <= {("credentials.py", "portal.api.openapi"), ("credentials.py", "portal.api.openapi.document")}
