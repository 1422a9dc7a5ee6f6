"""Domain errors of accounts: each names the rule that was broken."""


class AccountsError(Exception):
    code = "error"


class WeakPassword(AccountsError):
    code = "weak_password"

    def __init__(self, reasons: list[str]):
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class InvalidCredentials(AccountsError):
    code = "invalid_credentials"


class LoginThrottled(AccountsError):
    code = "login_throttled"

    def __init__(self, retry_after_seconds: int):
        super().__init__(f"retry after {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class LoginLocked(AccountsError):
    """Too many failures in a row: only a password reset by e-mail unlocks the address."""

    code = "login_locked"


class TokenInvalid(AccountsError):
    """Unknown, expired, used or revoked link."""

    code = "token_invalid"


class PhoneInvalid(AccountsError):
    code = "phone_invalid"


class PhoneTaken(AccountsError):
    code = "phone_taken"


class ResendTooSoon(AccountsError):
    code = "resend_too_soon"

    def __init__(self, retry_after_seconds: int):
        super().__init__(f"retry after {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class TooManyCodes(AccountsError):
    """The user's daily number of codes is used up; the next one can be sent after
    `retry_after_seconds`."""

    code = "too_many_codes"

    def __init__(self, retry_after_seconds: int):
        super().__init__(f"retry after {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class NoChallenge(AccountsError):
    code = "no_challenge"


class CodeExpired(AccountsError):
    code = "code_expired"


class WrongCode(AccountsError):
    code = "wrong_code"

    def __init__(self, attempts_left: int):
        super().__init__(f"{attempts_left} attempts left")
        self.attempts_left = attempts_left


class ChallengeLocked(AccountsError):
    code = "challenge_locked"


class AlreadyMember(AccountsError):
    code = "already_member"


class MailQuotaReached(AccountsError):
    """The address got as many mails of this kind as an hour allows; nothing was done."""

    code = "mail_quota_reached"


class LastOwner(AccountsError):
    """An account always keeps at least one owner."""

    code = "last_owner"


class NotAMember(AccountsError):
    code = "not_a_member"


class InvitationForSomeoneElse(AccountsError):
    code = "invitation_for_someone_else"


class EmailTaken(AccountsError):
    code = "email_taken"


class WrongPassword(AccountsError):
    code = "wrong_password"
