"""S8: known and unknown addresses take the same time (a dummy hash runs for unknown ones).
Requests alternate between the two kinds, so a busy machine slows both alike."""

import statistics
import time

from tests.helpers import PageClient, make_user

ROUNDS = 50


def median_gap_ms(client, known_request, unknown_request) -> float:
    known, unknown = [], []
    for i in range(ROUNDS):
        for request, times in ((known_request, known), (unknown_request, unknown))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            request(i)
            times.append(time.perf_counter() - started)
    return abs(statistics.median(known) - statistics.median(unknown)) * 1000


def test_log_in_takes_as_long_for_an_unknown_address(app):
    for n in range(10):
        make_user(app, f"known{n}@example.com")
    client = PageClient(app.test_client(), app)
    token = client.csrf_token()

    def attempt(email):
        return lambda i: client.client.post("/login", data={"email": email(i), "password": "wrong but long password", "csrf_token": token})

    gap = median_gap_ms(client, attempt(lambda i: f"known{i % 10}@example.com"), attempt(lambda i: f"unknown{i}@example.com"))
    assert gap < 10, f"medians differ by {gap:.1f} ms"


def test_forgot_password_takes_as_long_for_an_unknown_address(app):
    make_user(app, "known@example.com")
    client = PageClient(app.test_client(), app)
    token = client.csrf_token()

    def ask(email):
        return lambda i: client.client.post("/password/forgot", data={"email": email, "csrf_token": token})

    gap = median_gap_ms(client, ask("known@example.com"), ask("unknown@example.com"))
    assert gap < 10, f"medians differ by {gap:.1f} ms"


def test_sign_up_takes_as_long_for_a_known_address(app):
    make_user(app, "known@example.com")
    client = PageClient(app.test_client(), app)
    token = client.csrf_token()

    def sign_up(email):
        return lambda i: client.client.post("/signup", data={
            "name": "N", "email": email(i), "password": "a long enough password", "account_kind": "individual",
            "tax_residency": "JP", "language": "en", "csrf_token": token,
        })

    gap = median_gap_ms(client, sign_up(lambda i: "known@example.com"), sign_up(lambda i: f"new{i}@example.com"))
    assert gap < 10, f"medians differ by {gap:.1f} ms"
