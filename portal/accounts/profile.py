"""The signed-in person's own settings."""

from sqlmodel import Session

from portal import db
from portal.accounts.models import Language, User


def update_profile(*, session: Session, user_id: int, name: str, language: str) -> User:
    if language not in list(Language):
        raise ValueError(f"unknown language {language!r}")
    with db.write(session):
        user = session.get(User, user_id)
        user.name = name.strip()
        user.language = Language(language)
    return user
