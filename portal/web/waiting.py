"""How long to wait, said as people say it: the time to try again, in the page's language and
Japan time, and how far away it is."""

from datetime import timedelta

from flask_babel import format_datetime, format_time, ngettext
from flask_babel import gettext as _

from portal import clock

SAME_DAY = timedelta(hours=12)


def duration(seconds: int) -> str:
    """"45 seconds", "3 minutes", "2 hours" (rounded up to the unit)."""
    if seconds < 60:
        return ngettext("%(num)s second", "%(num)s seconds", max(1, seconds))
    minutes = -(-seconds // 60)
    if minutes < 120:
        return ngettext("%(num)s minute", "%(num)s minutes", minutes)
    return ngettext("%(num)s hour", "%(num)s hours", -(-minutes // 60))


def retry_at(seconds: int) -> str:
    """"Try again after 15:42 Japan time (in 3 minutes)." — with the date when it is half a day or more away."""
    when = clock.now() + timedelta(seconds=max(1, seconds))
    moment = format_datetime(when, "short") if timedelta(seconds=seconds) >= SAME_DAY else format_time(when, "short")
    return _("Try again after %(time)s Japan time (in %(wait)s).", time=moment, wait=duration(seconds))
