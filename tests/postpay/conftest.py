import pytest


@pytest.fixture
def api(app):
    return app.test_client()
