"""The signed-in person's own settings."""

from sqlmodel import Session

from portal.accounts.models import LANGUAGES, User


def update_profile(*, session: Session, user_id: int, name: str, language: str) -> User:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}")
    user = session.get(User, user_id)
    user.name = name.strip()
    user.language = language
    session.commit()
    return user
