"""Balance alerts and expiry warnings (issue 13; DESIGN.md "Product rules"): low-balance
thresholds, expiry and run-out warnings, delivered by the worker through the outbox.

Modules:
  models    AlertSettings (one per account, created lazily with the defaults: e-mail on, expiry
            warnings on, run-out within 7 days, every owner and billing member receives),
            AlertAddress (an extra address: confirmation token, confirmed_at; nothing is sent to
            it before it is confirmed), AlertMember (chosen member recipients when not "all"),
            Notice (one per notice: `uuid`, kind, payload JSON, account_id, created_at),
            Delivery (one per notice, recipient and channel: attempts, status, last_error,
            delivered_at), AlertMark (expiry/run-out warnings already given: once per lot per
            kind, once per day for run-out).
            The thresholds themselves are portal.ledger.models.BalanceThreshold (table
            balance_thresholds: account_id, amount in milli-yen, armed, crossed_at): the ledger
            disarms and re-arms them in the booking's own statement (no extra round trip on
            PostgreSQL) and hands the changes to `detect` through the ledger's watcher hook.
  rules     pure: crossed(before, after, thresholds) -> (crossed, rearmed); threshold checks
            (at most 3, whole yen 1..1,000,000, distinct); expiry warning due (7 d, 1 d);
            run-out due (forecast within N days); back-off.
  detect    in the booking's transaction: writes Notice + Delivery + outbox rows.
  delivery  the worker's part: deliver one Delivery (mail / webhook / SMS), record the attempt.
  service   the units of work below.

Notice kinds (NoticeKind): low_balance, recovered, expiry_7d, expiry_1d, run_out, test.
Channels (Channel): email, webhook, sms. Delivery status (DeliveryStatus): pending, sent, failing, failed.

Services (`from portal.alerts import service as alerts`), keyword-only, `now` passed in; amounts
the pages show and send are whole yen (int):
  settings_of(session, account_id) -> Settings   (a read; defaults when nothing was saved)
      Settings: thresholds [ThresholdView(id, yen, armed, crossed_at)], email: bool,
      webhook_url: str | None, webhook_secret_set: bool, sms: bool, sms_number: str | None,
      expiry_warnings: bool, run_out_days: int | None (None = off), all_members: bool,
      member_ids: list[int], addresses [AddressView(id, address, confirmed_at)].
  save_thresholds(session, account_id, user_id, yen: list[int], now) -> list[ThresholdView]
      InvalidFields({"thresholds": [...]}) ; a new threshold starts armed only when the
      available balance is at or above it (no notice for a balance already below).
  save_channels(session, account_id, user_id, email: bool, webhook_url: str | None, sms: bool,
      sms_number: str | None, expiry_warnings: bool, run_out_days: int | None, now) -> Settings
      InvalidFields naming each field (webhook_url must be https:// outside development;
      sms_number must be one of the account members' verified numbers).
  rotate_webhook_secret(session, account_id, user_id, now) -> str   (the secret, shown once)
  save_members(session, account_id, user_id, all_members: bool, member_ids: list[int], now)
  add_address(session, account_id, user_id, address, confirm_url: str, language, now) -> AddressView
      queues the confirmation mail; `confirm_url` contains "{token}" (the page fills in
      url_for(..., token="{token}") or similar). InvalidFields({"address": ...}).
  confirm_address(session, token, now) -> AddressView | None   (None: unknown or used token)
  remove_address(session, account_id, user_id, address_id, now)
  send_test(session, account_id, user_id, now) -> str   (the test notice's uuid; webhook + mail)
  history(session, account_id, limit=100) -> list[HistoryRow(notice_id, kind, created_at,
      recipient, channel, status, attempts, last_error, delivered_at)]   (newest first)
  unsubscribe(session, token, now) -> bool   tokens come in the mails (rules.unsubscribe_token);
      turns the notice kind (expiry / run-out) off for that recipient's account settings.
  scheduled_pass(session, now) -> int   the worker's pass: expiry and run-out warnings due.
  deliver(session, delivery_id, now, mailer, post) (the worker only).
"""
