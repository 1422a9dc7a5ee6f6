"""Invoice billing for companies (請求書後払い): a credit line by contract, a monthly qualified
invoice, bank-transfer payments and overdue handling. No Flask.

The credit line is a ledger lot of kind `line` (portal.ledger.rules.LotKind.LINE): its amount is
the limit and its remaining is the limit less the usage not yet paid for (unbilled usage, the
unpaid part of the invoices, and what open call holds set aside on it). The ledger spends it
after every prepaid lot, under the same lock and idempotency as every debit; it never expires,
and a suspended line is closed by setting its `expires_at` to the moment of suspension.
"""
