import click
import pytest
from sqlalchemy import select

from portal.accounts.models import Membership, User
from tests.helpers import PASSWORD, db_session, mails_to


def test_accounts_create_makes_a_verified_owner_from_stdin(app):
    result = app.test_cli_runner().invoke(
        args=["accounts", "create", "ops@example.com", "--password-stdin", "--verified", "--phone", "+819012345678"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "created account for ops@example.com" in result.output
    assert PASSWORD not in result.output
    with db_session(app) as session:
        user = session.scalars(select(User)).one()
        assert user.email_verified_at and user.phone_e164 == "+819012345678" and user.phone_verified_at
        assert session.scalars(select(Membership)).one().role == "owner"


def test_accounts_create_refuses_a_weak_password_and_a_duplicate(app):
    runner = app.test_cli_runner()
    weak = runner.invoke(args=["accounts", "create", "ops@example.com", "--password-stdin"], input="short\n")
    assert weak.exit_code != 0 and "password refused: too_short" in weak.output
    runner.invoke(args=["accounts", "create", "ops@example.com", "--password-stdin"], input=PASSWORD + "\n")
    again = runner.invoke(args=["accounts", "create", "ops@example.com", "--password-stdin"], input=PASSWORD + "\n")
    assert again.exit_code != 0 and "already has a login" in again.output


def test_worker_once_delivers_the_outbox(app, client):
    client.post("/password/forgot", {"email": "nobody@example.com"})  # queued like a known address's
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0 and "delivered 1" in result.output
    assert mails_to(app, "nobody@example.com") == []  # the worker finds no login: nothing is sent


def test_db_upgrade_is_idempotent(app):
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "database at head" in result.output


def test_the_command_explains_an_unsafe_production_configuration(monkeypatch):
    from click.testing import CliRunner

    from portal.cli import main

    for name in ("PORTAL_ENV", "PORTAL_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["ledger", "check"])
    assert result.exit_code == 1
    assert "PORTAL_SECRET_KEY must be set" in result.output and "PORTAL_ENV=development" in result.output


def test_operator_commands_and_the_worker_run_without_the_webs_statement_timeout(monkeypatch):
    from portal.cli import _create_app
    from portal.config import load

    monkeypatch.setenv("PORTAL_DATABASE_STATEMENT_TIMEOUT_MS", "2500")
    assert load()["DATABASE_STATEMENT_TIMEOUT_MS"] == 2500  # gunicorn's web processes
    assert _create_app().config["DATABASE_STATEMENT_TIMEOUT_MS"] == 0  # `portal worker`, `portal ledger check`, …
    with click.Context(click.Command("run"), info_name="run"):
        assert _create_app().config["DATABASE_STATEMENT_TIMEOUT_MS"] == 2500  # `portal run` serves pages


def test_portal_run_loads_the_app_inside_its_own_command_context(monkeypatch):
    """What the timeout choice relies on: Flask's `run` creates the app within `run`'s context."""
    from portal import cli

    seen = []

    def spy():
        seen.append(click.get_current_context().info_name)
        raise SystemExit(0)  # stop before a server starts

    monkeypatch.setattr(cli.main, "create_app", spy)
    with pytest.raises(SystemExit):
        cli.main.main(["run"], standalone_mode=False)
    assert seen == ["run"]
