"""Balance alerts and expiry warnings (issue 13; DESIGN.md "Product rules"): low-balance
thresholds, expiry and run-out warnings, delivered by the worker through the outbox.

Modules:
  models    AlertSettings (one per account, absent = the defaults: e-mail on, webhook off, SMS off,
            expiry warnings on, run-out within 7 days, every owner and billing member receives),
            AlertMember (chosen member recipients when `all_members` is off), AlertAddress (an
            extra address: token, confirmed_at; it receives nothing before it is confirmed),
            AlertOptOut (a recipient unsubscribed from "expiry" or "run_out"), Notice (one per
            notice: `uuid` = its stable id, kind, payload JSON), Delivery (one per notice,
            recipient and channel: status, attempts, last_error, last_attempt_at, delivered_at),
            AlertMark (a scheduled warning already given: per lot and kind, per day for run-out).
            The thresholds are portal.ledger.models.BalanceThreshold (table balance_thresholds:
            account_id, amount in milli-yen, armed, crossed_at, rearmed_at): the ledger disarms
            and re-arms them in the booking's own statement (a CTE of the one PostgreSQL
            statement, a conditional UPDATE … RETURNING on SQLite) under the account's lock, and
            hands what moved to `detect.on_balance_change` (registered by create_app through
            portal.ledger.steps.watch). A new account gets a ¥100 threshold in ledger.open_state
            (migration 0011 gives existing accounts theirs).
  rules     pure: crossed(before, after, thresholds) -> (crossed, rearmed) (the same rule as the
            SQL), armed_at_setup, threshold_errors, expiry_warning_due (7 d, 1 d),
            run_out_due(forecast, days, now), unsubscribe tokens (HMAC with the app secret).
  detect    in the causing transaction: write_notice -> Notice + Delivery rows + one outbox row
            (OutboxKind.ALERT, {"delivery_id"}) per delivery.
  delivery  the worker's part: deliver(session, delivery_id, outside, now) sends by mail
            (header X-Chotto-Notice-Id), webhook (JSON with "id", signed X-Chotto-Signature
            t=…,v1=… like the API callbacks, with the webhook's own secret) or SMS (through the
            API's send path, messaging.service.send_in: an sms_messages row with credential_id
            NULL, debited under "sms:<msgid>", handed to the carrier by the api_sms job and
            refunded if it fails; created once per delivery, Delivery.message_id, in the unit
            that records the attempt; unpayable or refused: failed for good, no debt), and
            records every attempt. The outbox gives the claim (FOR UPDATE SKIP LOCKED on
            PostgreSQL), the lease (PORTAL_ALERT_LEASE_SECONDS, renewed when the delivery starts;
            mail and webhook exchanges are cut at half of it) and the back-off.
  service   the units of work below.

Kinds (models.NoticeKind): low_balance, recovered, expiry_7d, expiry_1d, run_out, test.
Channels (models.Channel): email, webhook, sms. Status (models.DeliveryStatus): pending, sent,
failing (will be retried), failed (given up).

Services (`from portal.alerts import service as alerts`), keyword-only, `now` passed in; the
pages show whole yen:
  settings_of(session, account_id, now) -> Settings: thresholds [ThresholdView(id, yen, armed,
      crossed_at)] highest first, email, webhook_url, webhook_secret_set, sms, sms_number,
      expiry_warnings, run_out_days (None = off), all_members, member_ids, addresses
      [AddressView(id, address, confirmed_at)].
  thresholds_of(session, account_id) -> [ThresholdView]   (the dashboard: armed False = crossed)
  save_thresholds(session, account_id, user_id, yen: list[int], now) -> [ThresholdView]
      InvalidFields({"thresholds": [...]}); at most 3, whole yen 1..1,000,000, distinct. A
      threshold kept keeps its state; a new one is armed only if the balance is at or above it.
  save_channels(session, account_id, user_id, email, webhook_url, sms, sms_number, expiry_warnings,
      run_out_days, now, allow_http=False) -> Settings   InvalidFields naming webhook_url
      (https:// unless allow_http), run_out_days (1..90 or None), sms_number (a member's verified
      number). A webhook URL gets a signing secret on first save.
  rotate_webhook_secret(session, account_id, user_id, now) -> str   (shown once)
  webhook_secret(session, account_id) -> str | None
  save_members(session, account_id, user_id, all_members, member_ids, now)
  add_address(session, account_id, user_id, address, confirm_url, language, now) -> AddressView
      queues the confirmation mail (templates/mail/alert_confirm_address); `confirm_url` holds
      the literal "{token}". InvalidFields({"address": ...}).
  confirm_address(session, token, now) -> AddressView | None
  remove_address(session, account_id, user_id, address_id, now)
  send_test(session, account_id, user_id, now) -> str   a TEST notice to the webhook only; its uuid
  history(session, account_id, limit=100) -> [HistoryRow(notice_id, kind, created_at, recipient,
      channel, status, attempts, last_error, delivered_at)]   newest first
  unsubscribe(session, token, secret, now) -> bool   (the view: portal/web/alerts_unsubscribe.py)
  scheduled_pass(session, now) -> int   the worker's pass (each minute with the expiry sweep)
  deliver(session, delivery_id, outside, now)   the worker's (portal.services.alert_outside())
Refusal texts are English marked N_ (rules.N_); the page translates them with gettext. Webhook
URL and secret changes and extra addresses added or removed are recorded in the audit log
(alerts.webhook_changed, alerts.webhook_secret_rotated, alerts.address_added, alerts.address_removed).
"""
