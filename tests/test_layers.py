"""The layers of DESIGN.md's Architecture, read from the imports (STYLE 13): domain packages import
no Flask and neither face; the web pages and the API do not import each other; the ledger
imports no other domain package. Imports inside functions count too."""

import ast
from pathlib import Path

import pytest

PORTAL = Path(__file__).resolve().parents[1] / "portal"
DOMAIN = ("ledger", "accounts", "billing", "messaging", "credentials", "otp", "alerts", "usage", "onboarding", "postpay")
FLASK_AND_FACES = ("flask", "flask_login", "flask_wtf", "flask_babel", "portal.web", "portal.api", "portal.webhooks")


def module_of(path: Path) -> str:
    parts = path.relative_to(PORTAL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    module = module_of(path)
    return imports_in(path.read_text(), package=module if path.name == "__init__.py" else module.rpartition(".")[0])


def imports_in(source: str, *, package: str) -> set[str]:
    """Every module `source` (a module of `package`) imports, as absolute dotted names; `from a
    import b` counts as both `a` and `a.b` (b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def modules_under(package: str) -> list[Path]:
    root = PORTAL.joinpath(*package.split(".")[1:])
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")] if root.with_suffix(".py").exists() else []


def within(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def offending(packages, forbidden) -> list[str]:
    return sorted(f"{module_of(path)} imports {name}" for package in packages for path in modules_under(package)
                  for name in imports_of(path) if within(name, forbidden))


def test_every_module_of_the_portal_can_be_read():
    assert len(list(PORTAL.rglob("*.py"))) > 50
    assert modules_under("portal.ledger") and modules_under("portal.web") and modules_under("portal.api")


@pytest.mark.parametrize("package", DOMAIN)
def test_a_domain_package_imports_no_flask_and_no_face(package):
    assert offending([f"portal.{package}"], FLASK_AND_FACES) == []


def test_the_pages_import_nothing_of_the_api():
    assert offending(["portal.web"], ["portal.api"]) == []


def test_the_api_imports_nothing_of_the_pages():
    assert offending(["portal.api"], ["portal.web"]) == []


def test_the_ledger_imports_no_other_domain_package():
    others = [f"portal.{name}" for name in DOMAIN if name != "ledger"]
    assert offending(["portal.ledger"], others) == []


def test_imports_inside_functions_and_relative_imports_count():
    source = "def f():\n    from flask import g\n    from ..web import forms\n    from . import rules\n"
    assert imports_in(source, package="portal.ledger") >= {"flask", "portal.web.forms", "portal.ledger.rules"}
