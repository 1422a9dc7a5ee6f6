"""OTP sites (SMS絶対認証): a customer registers its website and verifies its own users' phone
numbers with two API calls. DESIGN.md "OTP sites"; issue 12.

Modules:
  models    OtpSite (one per domain per account, its settings and ownership token), OtpCredentialSite,
            OtpCode (one row per code sent: keyed hash, expiry, wrong attempts, status; at most one
            ACTIVE per site, mode and number), OtpBlocked (requests a guard refused, with the reason).
  rules     pure: domains, Settings and their ranges, templates (must name {code}, one segment),
            codes from `secrets` and their HMAC, expiry, cooldown, carried failures, fraud guards,
            the log's statuses and the daily statistics.
  errors    the refusals, each reason with English text marked N_ for the catalog.
  ownership the token file's URL and its guarded fetch.
  sites, codes, fallback, reports, events: the units of work, all re-exported by `service`:

Services (`from portal.otp import service as otp`), keyword-only, `now` passed in:
  register_site(session, account_id, website, now, display_name=None, language=ja) -> OtpSite
      InvalidFields (website), SiteExists. Default settings, a fresh `ownership_token`.
  register_site_by_api(session, principal, website, now) -> OtpSite   (needs the `otp` scope)
  update_settings(session, account_id, site_id, settings: rules.Settings, now) -> OtpSite
      InvalidFields naming each wrong setting; rules.default_settings() gives a starting point.
  site_of / sites_of / blocked_of (reads), mark_proven(session, account_id, site_id, proven, now),
  resume_site(session, account_id, site_id, user_id, now): lifts a completion-rate pause.
  lift_block(session, account_id, block_id, user_id, now): an owner lifts a number, number-locked,
      range or IP block (what was counted before no longer counts) or a pause; NotLiftable for a
      country or an unproven site.
  check_ownership(session, account_id, site_id, fetch, https, now) -> bool: fetches the token file
      (ownership.token_url; fetch = ownership.fetcher(allow_private=...)) and records the result;
      sites_to_recheck(session, now) lists proven sites checked 30 days ago or more (the worker
      re-checks them).
  limit_credential(session, account_id, user_id, credential_id, site_ids, now) -> (Credential,
      [OtpSite]): audited; none: every site. A credential limited to some sites gets SiteNotAllowed
      (403) for the others. sites_of_credential(...) reads one credential's limit; site_limits_of(
      session, account_id) -> SiteLimits, the account's sites and every limited credential's.
      create_credential(credentials.create's arguments, site_ids): created and limited in one unit.
  log_of(session, account_id, site_id, now, limit=100) -> [LogLine]: codes and blocked requests,
      newest first, each with its status (rules.outcome), channel and cost.
  statistics_of(session, account_id, site_id, now, days=30, mode="live") -> [rules.Day]: by Japan
      day: requests, blocked, delivered, verified, completion_percent, fallback calls, cost.
  request_code(session, principal, request: RequestCode, secret, caller, now, daily_cap=None)
      -> Issued(msgid, expires_at)
      by SMS (¥3), or with channel "voice" by a call from `caller` that reads the code (the voice price).
      InvalidFields, SiteNotFound, ResendTooSoon(retry_after_seconds), RequestBlocked(reason,
      retry_after_seconds) — recorded in otp_blocked —, InsufficientCredit, SpendCapReached, ScopeMissing.
  request_code_by_api(..., idempotency_key, render) -> StoredAnswer: the same with the API's
      Idempotency-Key (messaging.stored_answer / keep_answer): a retry gets the first answer.
  verify_code(session, principal, request: VerifyCode, secret, now) -> Verified
      VerificationFailed(reason: Failure, attempts_left), InvalidFields, SiteNotFound, ScopeMissing.
  after_sms(session, message_id, caller, now) / call_fallback(session, code_id, caller, now) -> callid | None
      the worker's: a site's voice fallback (an outbox job `otp_fallback` due fallback_seconds after
      the request, or at once after a failed SMS) queues one call through messaging.call_in that
      reads the code, unless it was verified, replaced, locked or expired. The text read out is
      kept on the code (fallback_text) only until then.
Codes are readable only on the phone: otp_codes holds their HMAC; once the carrier has the SMS its
stored body is replaced by the masked one (after_sms), and a call's text by its masked form once the
call ended (after_call); the fallback's text is dropped once the call is queued or cannot come.
Events: a site with a callback_url gets a signed POST (the request's credential's callback secret,
like the status callbacks) of {"event", "website", "otp_id", "phone_number", "time"} for sent,
delivered, failed, fallback_called (+ "callid"), verified and blocked (+ "reason"); the delivery
of a code is reported once (otp_codes.delivery_event).
`secret` is the key of the codes' HMAC: the application's SECRET_KEY, as bytes. Reason texts for
pages: errors.BLOCK_TEXTS and errors.FAILURE_TEXTS (translate them with gettext).
"""
