"""The only place that reads the current time.

Services take `now` as an argument; views and jobs ask `clock.now()`. Tests install a
`FrozenClock` through create_app(overrides={"CLOCK": ...}).
"""

from datetime import datetime, timedelta, timezone

from flask import current_app, has_app_context

JST = timezone(timedelta(hours=9), "JST")


def system_now() -> datetime:
    return datetime.now(timezone.utc)


class FrozenClock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> datetime:
        self.at += timedelta(**delta)
        return self.at


def now() -> datetime:
    if has_app_context():
        return current_app.config.get("CLOCK", system_now)()
    return system_now()
