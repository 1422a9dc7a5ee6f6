"""Reading a request's fields so that one answer names every invalid field at once, keyed by
field (Xoxzo's 400: `{"recipient": ["…"], "sender": ["…"]}`), instead of stopping at the first."""

from collections.abc import Callable
from typing import TypeVar

from portal.messaging.errors import InvalidField, InvalidFields

T = TypeVar("T")


class Form:
    """The fields of one request (form or JSON values) and what is wrong with them so far."""

    def __init__(self, fields: dict):
        self.fields = fields
        self.errors: dict[str, list[str]] = {}

    @classmethod
    def of(cls, request) -> "Form":
        """The fields of a request dataclass, as they are (dataclasses.asdict would copy every
        value deeply, on every request)."""
        return cls(dict(vars(request)))

    def add(self, field: str, *reasons: str) -> None:
        self.errors.setdefault(field, []).extend(reasons)

    def read(self, name: str, rule: Callable[[str | None], T], *, required: bool = True,
             lists: bool = False) -> T | None:
        """`rule` applied to the field's value, or None with the problem noted. A value must be
        a string (or, with `lists`, a list of strings: a JSON array or a repeated form field)."""
        value = self.fields.get(name)
        if value is not None and not (isinstance(value, str) or (lists and _strings(value))):
            self.add(name, "Give one value, not a list." if _strings(value) else "Must be a string.")
            return None
        if required and not (value.strip() if isinstance(value, str) else value):
            self.add(name, "This field is required.")
            return None
        return self.check(rule, value)

    def check(self, rule: Callable[..., T], *args) -> T | None:
        try:
            return rule(*args)
        except InvalidField as invalid:
            self.add(invalid.field, *invalid.reasons)
            return None

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise InvalidFields(self.errors)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
