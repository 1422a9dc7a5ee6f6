"""Usage history (issue 14): every message, call and OTP code of an account with filters,
totals, a daily series, breakdowns, a streamed CSV, monthly statements and the 13-month
retention. The pages import `portal.usage.service` only.

Interface (for the pages; changes are noted here first):

- `rules.filters_from(params, *, today) -> Filters` reads a query string (`range` = today, 7d,
  this-month, last-month or custom with `from`/`to`; `product`, `credential_id`, `site_id`,
  `status`, `country`, `tag`, `mode`); bad input raises `InvalidFilter(field, message)`.
  `Filters.to_params()` gives the query string back. Days are Japan time, ends inclusive.
- `page(session, *, account_id, filters, after, limit=50, role, now) -> Page(rows, next)`;
  `after`/`next` are opaque cursors (a bad one raises InvalidFilter with field "after").
- `totals(...) -> Totals(count, segments, seconds, minutes, cost)`, `daily(...) ->
  [DayTotal(day, count, cost)]` (every day of the range), `breakdown(...) ->
  Breakdown(by_credential, by_site)` of `Share(id, name, count, cost)`.
- `choices(session, *, account_id) -> Choices(credentials, sites, countries, tags, statuses)`.
- `detail(session, *, account_id, kind, ref, role) -> Detail | None` (kind: sms, otp, voice or
  otp_call; timeline steps: created, handed_to_carrier, delivered, failed, refunded,
  call_started, call_ended, code_verified).
- `export(db.job_session, *, account_id, filters) -> Iterator[bytes]` (wrap it in
  `stream_with_context`), `export_filename(filters)`.
- `monthly_statement(session, *, account_id, month) -> Statement(month, start, end, lines, count,
  amount)` with `StatementLine(product, credential_id, credential_name, count, units, unit, amount)`.
- `purge(session, *, now, batch=5000) -> int` (the worker's daily pass).

Amounts are milli-yen, net of refunds; test rows cost 0. A `credential_id` of None means the
message was sent by Chotto itself (a balance alert).
"""
