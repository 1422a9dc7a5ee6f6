"""The express send (PostgreSQL): one function call that authenticates, locks the account and
pays, records and queues an SMS, or does nothing at all

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 02:00:00

`express_sms` is the plain case of a live send in a single statement, so in one round trip and
its own transaction: the credential's secret matches, it is live, has the scope and no IP
allow-list; the account has bought credit and may send to the country; no lot is due to be
written off; the price agrees with what the caller computed; the credit covers it in burn order;
no balance threshold moves; the spending limits hold. Then it writes exactly what the general
path writes (lots, cached totals, journal line and entries, the message, its outbox job, the
spend counters, the credential's last use) and returns the message's id. In any other case it
returns no row, having written nothing, and the caller takes the general path, which knows
every rule (write-offs, alerts, trial destinations, refusals and their answers).

Each statement of a PL/pgSQL function takes a fresh snapshot, so what it reads after waiting for
the account's lock is never stale (as ledger_lock, migration 0002).
"""

from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

EXPRESS_SMS = """
CREATE FUNCTION express_sms(
    p_sid varchar, p_digest varchar, p_now timestamptz, p_msgid varchar, p_recipient varchar, p_country varchar,
    p_sender varchar, p_body text, p_encoding varchar, p_segments integer, p_tags text, p_callback_url text,
    p_cost bigint, p_request_hash varchar, p_reason varchar, p_day varchar, p_month varchar, p_daily_cap bigint,
    p_used_before timestamptz, p_ip varchar)
RETURNS TABLE (message_id integer, account_id integer, transaction_id integer)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    lot record;
    v_left bigint := p_cost;
    v_take bigint;
    v_lots integer[] := '{}';
    v_changes bigint[] := '{}';
    v_balance bigint;
    v_moves boolean;
    v_day_spent bigint;
    v_month_spent bigint;
    v_valid boolean;
    v_transaction integer;
    v_message integer;
BEGIN
    -- the credential, its account's state locked (FOR UPDATE OF: after waiting for the lock the
    -- row read is the committed one), and the price
    SELECT cr.id, cr.account_id, cr.mode, cr.scopes, cr.monthly_cap, cr.allowed_networks, cr.last_used_at,
           a.allowed_countries, st.balance, st.held, st.has_purchased,
           (SELECT pr.unit_price FROM prices pr WHERE pr.product = 'sms' AND pr.country = p_country) AS unit_price
      INTO c
      FROM api_credentials cr
      JOIN api_credential_secrets sec ON sec.credential_id = cr.id
      JOIN accounts a ON a.id = cr.account_id
      JOIN credit_states st ON st.account_id = cr.account_id
     WHERE sec.digest = p_digest AND cr.sid = p_sid AND cr.revoked_at IS NULL
       AND (sec.expires_at IS NULL OR sec.expires_at > p_now)
       FOR UPDATE OF st;
    IF NOT FOUND OR c.mode <> 'live' OR c.allowed_networks <> '' OR NOT c.has_purchased
       OR NOT ('sms' = ANY (string_to_array(c.scopes, ',')))
       OR NOT (p_country = ANY (string_to_array(COALESCE(NULLIF(c.allowed_countries, ''), 'JP'), ',')))
       OR p_cost <= 0 OR c.unit_price IS NULL OR c.unit_price * p_segments <> p_cost THEN
        RETURN;
    END IF;
    -- every lot with credit left, in burn order (ledger.rules.burn_key)
    FOR lot IN SELECT l.id, l.kind, l.remaining, l.expires_at, l.refunded_at FROM credit_lots l
                WHERE l.account_id = c.account_id AND l.remaining > 0
                ORDER BY l.kind = 'line', l.expires_at, l.kind <> 'trial', l.issued_at, l.id LOOP
        IF lot.refunded_at IS NOT NULL OR (lot.kind <> 'line' AND lot.expires_at <= p_now) THEN
            RETURN;  -- a write-off is due first (ledger.rules.is_due, steps.write_off_due)
        END IF;
        CONTINUE WHEN v_left = 0 OR p_now >= lot.expires_at;  -- a suspended credit line is not live
        v_take := LEAST(lot.remaining, v_left);
        v_lots := v_lots || lot.id;
        v_changes := v_changes || -v_take;
        v_left := v_left - v_take;
    END LOOP;
    IF v_left > 0 THEN
        RETURN;  -- short of credit
    END IF;
    v_balance := c.balance - p_cost;
    -- read after the lock: the thresholds, the spending so far, and the credential still valid
    -- (revoked or its secret ended while this send waited for the lock: refused as the next request)
    SELECT EXISTS (SELECT 1 FROM balance_thresholds t WHERE t.account_id = c.account_id
                      AND ((t.armed AND t.amount > v_balance) OR (NOT t.armed AND t.amount <= v_balance))),
           COALESCE((SELECT sc.spent FROM spend_counters sc
                      WHERE sc.scope = 'account:' || c.account_id AND sc.period = p_day), 0),
           COALESCE((SELECT sc.spent FROM spend_counters sc
                      WHERE sc.scope = 'credential:' || c.id AND sc.period = p_month), 0),
           EXISTS (SELECT 1 FROM api_credentials cr JOIN api_credential_secrets sec ON sec.credential_id = cr.id
                    WHERE cr.id = c.id AND cr.revoked_at IS NULL AND sec.digest = p_digest
                      AND (sec.expires_at IS NULL OR sec.expires_at > p_now))
      INTO v_moves, v_day_spent, v_month_spent, v_valid;
    IF v_moves  -- a threshold moves (ledger.writes._thresholds_moved): its alert is the general path's
       OR NOT v_valid
       OR (p_daily_cap IS NOT NULL AND p_cost + v_day_spent > p_daily_cap)
       OR (c.monthly_cap IS NOT NULL AND p_cost + v_month_spent > c.monthly_cap) THEN
        RETURN;
    END IF;

    WITH totals AS (UPDATE credit_states st SET balance = v_balance, held = c.held, updated_at = p_now
                     WHERE st.account_id = c.account_id)
    INSERT INTO credit_transactions (account_id, kind, amount, balance_after, held_after, idempotency_key,
                                     request_hash, reason, hold_id, occurred_at)
    VALUES (c.account_id, 'debit', -p_cost, v_balance, c.held, 'sms:' || p_msgid, p_request_hash, p_reason, NULL,
            p_now)
    RETURNING id INTO v_transaction;
    FOR i IN 1 .. cardinality(v_lots) LOOP  -- in burn order, as the general path writes them
        WITH taken AS (UPDATE credit_lots l SET remaining = l.remaining + v_changes[i] WHERE l.id = v_lots[i])
        INSERT INTO credit_entries (transaction_id, lot_id, amount) VALUES (v_transaction, v_lots[i], v_changes[i]);
    END LOOP;
    WITH message AS (
        INSERT INTO sms_messages (msgid, account_id, credential_id, mode, product, otp_site_id, sender, recipient,
                                  country, body, encoding, segments, cost, status, tags, callback_url, created_at,
                                  updated_at)
        VALUES (p_msgid, c.account_id, c.id, 'live', 'sms', NULL, p_sender, p_recipient, p_country, p_body,
                p_encoding, p_segments, p_cost, 'QUEUED', p_tags, p_callback_url, p_now, p_now)
        RETURNING id),
    job AS (
        INSERT INTO outbox (kind, payload, created_at, available_at, attempts)
        SELECT 'api_sms', '{"message_id": ' || message.id || '}', p_now, p_now, 0 FROM message)
    SELECT message.id INTO v_message FROM message;
    INSERT INTO spend_counters AS sc (scope, period, spent)
    VALUES ('account:' || c.account_id, p_day, p_cost), ('credential:' || c.id, p_month, p_cost)
        ON CONFLICT (scope, period) DO UPDATE SET spent = sc.spent + excluded.spent;
    IF c.last_used_at IS NULL OR c.last_used_at <= p_used_before THEN
        UPDATE api_credentials cr SET last_used_at = p_now, last_used_ip = left(p_ip, 45)
         WHERE cr.id = c.id AND (cr.last_used_at IS NULL OR cr.last_used_at <= p_used_before);
    END IF;
    RETURN QUERY SELECT v_message, c.account_id, v_transaction;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(EXPRESS_SMS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS express_sms(varchar, varchar, timestamptz, varchar, varchar, varchar, "
                   "varchar, text, varchar, integer, text, text, bigint, varchar, varchar, varchar, varchar, bigint, "
                   "timestamptz, varchar)")
