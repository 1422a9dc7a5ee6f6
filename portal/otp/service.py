"""The OTP services, one import for the faces and the worker (`from portal.otp import service as
otp`): one unit of work each, keyword-only, `now` passed in, no HTTP. They live in
`sites` (registration, settings, ownership, blocks, credential limits), `codes` (request and
verify), `fallback` (the worker's calls and masking), `reports` (log and statistics) and `events`
(the site's callbacks); see the package's docstring."""

from portal.otp.codes import (SENDER, Issued, RequestCode, Verified, VerifyCode, request_code, request_code_by_api,
                              verify_code)
from portal.otp.events import Event
from portal.otp.fallback import after_call, after_sms, call_fallback
from portal.otp.reports import LogLine, log_of, statistics_of
from portal.otp.sites import (LIFTABLE, RECHECK_EVERY, SiteLimits, blocked_of, check_ownership, create_credential,
                              lift_block, limit_credential, mark_proven, register_site, register_site_by_api,
                              resume_site, site_limits_of, site_of, sites_of, sites_of_credential, sites_to_recheck,
                              update_settings)

__all__ = [
    "LIFTABLE", "RECHECK_EVERY", "SENDER", "Event", "Issued", "LogLine", "RequestCode", "SiteLimits", "Verified",
    "VerifyCode", "after_call", "after_sms", "blocked_of", "call_fallback", "check_ownership", "create_credential",
    "lift_block", "limit_credential", "log_of", "mark_proven", "register_site", "register_site_by_api",
    "request_code", "request_code_by_api", "resume_site", "site_limits_of", "site_of", "sites_of",
    "sites_of_credential", "sites_to_recheck", "statistics_of", "update_settings", "verify_code",
]
