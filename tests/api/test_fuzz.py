"""A fuzz run of the OpenAPI document (schemathesis): whatever the generated requests, no
answer is a 5xx, and every status code is one the document declares."""

from hypothesis import HealthCheck, given, settings
import schemathesis

from tests.api.conftest import fund, new_key

EXAMPLES = 100


def test_no_generated_request_gets_a_5xx(app, customer):
    user, account_id = customer
    fund(app, account_id, 100_000)
    key = new_key(app, account_id, user.id)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    seen = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(headers=key.headers)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
            declared = set(operation.definition.raw["responses"])
            assert str(response.status_code) in declared, (case.method, case.path, response.status_code, response.text[:200])
            seen.setdefault(f"{case.method} {operation.path}", set()).add(response.status_code)

        run()
    print("fuzz: status codes per operation", seen)
    assert len(seen) == 9, seen
