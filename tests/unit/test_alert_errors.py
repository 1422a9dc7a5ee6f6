"""What the alert pages say of a delivery's last error: readable words from the technical text
the worker keeps (an exception's repr), never the text itself."""

import smtplib

import pytest

from portal.alerts import rules


@pytest.mark.parametrize("channel, error, said", [
    ("email", repr(TimeoutError("the mail server took longer than 22.5 s")), "The mail server did not answer in time."),
    ("webhook", repr(TimeoutError("the POST took longer than 10 s")), "Your server did not answer in time."),
    ("email", repr(ConnectionRefusedError(111, "Connection refused")), "The mail server could not be reached."),
    ("webhook", repr(ConnectionRefusedError(111, "Connection refused")), "Your server could not be reached."),
    ("email", repr(smtplib.SMTPServerDisconnected("Connection unexpectedly closed")),
     "The mail server could not be reached."),
    ("email", repr(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")})),
     "The mail server refused this address."),
    ("email", repr(smtplib.SMTPDataError(554, b"spam")), "The mail server refused the message."),
    ("webhook", repr(ValueError("the webhook has no signing secret")),
     "The webhook has no signing secret: save the webhook again."),
    ("sms", f"{rules.NO_CREDIT}: the SMS costs 10000 milli-yen, 5000 available",
     "There was not enough credit to pay for the SMS, so it was not sent. Nothing was charged."),
    ("sms", f"{rules.NOT_SENDABLE}: Sending to JP is not enabled for this account.",
     "This account may not send an SMS to this number, so it was not sent. Nothing was charged."),
    ("webhook", repr(KeyError("surprise")),
     "The delivery failed (an unexpected error: Chotto's operators can see its details)."),
])
def test_a_last_error_is_said_in_words(channel, error, said):
    assert rules.readable_error(channel, error) == (said, {})


def test_a_webhooks_answer_names_its_status_and_no_error_says_nothing():
    assert rules.readable_error("webhook", "ValueError('webhook answered 503')") == (
        "Your server answered with HTTP status %(status)s instead of 2xx.", {"status": "503"})
    assert rules.readable_error("email", None) is None
