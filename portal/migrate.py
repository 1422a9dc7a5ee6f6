"""Alembic, driven from code so `portal db upgrade` and the tests share one path."""

from alembic import command
from alembic.config import Config

from portal.config import ROOT, normalise_database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", normalise_database_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("sqlite:///"):
        (ROOT / "instance").mkdir(exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)
