from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from portal.migrate import alembic_config
from portal.models import metadata

HEAD = "0017"


def test_the_migration_head_is_pinned():
    """Bump HEAD with each new migration, so two branches adding one each cannot both land."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [HEAD]
    assert [rev.revision for rev in script.walk_revisions()][-1] == "0001"


def test_the_migrated_schema_matches_the_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == HEAD
        assert compare_metadata(context, metadata) == []
    engine.dispose()
