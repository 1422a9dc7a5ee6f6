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
    s record;
    lot record;
    v_left bigint := p_cost;
    v_take bigint;
    v_lots integer[] := '{}';
    v_changes bigint[] := '{}';
    v_balance bigint;
    v_day_scope varchar;
    v_month_scope varchar;
    v_transaction integer;
    v_message integer;
BEGIN
    SELECT cr.id, cr.account_id, cr.mode, cr.scopes, cr.monthly_cap, cr.allowed_networks, cr.last_used_at,
           a.allowed_countries
      INTO c
      FROM api_credentials cr
      JOIN api_credential_secrets sec ON sec.credential_id = cr.id
      JOIN accounts a ON a.id = cr.account_id
     WHERE sec.digest = p_digest AND cr.sid = p_sid AND cr.revoked_at IS NULL
       AND (sec.expires_at IS NULL OR sec.expires_at > p_now);
    IF NOT FOUND OR c.mode <> 'live' OR c.allowed_networks <> ''
       OR NOT ('sms' = ANY (string_to_array(c.scopes, ',')))
       OR NOT (p_country = ANY (string_to_array(COALESCE(NULLIF(c.allowed_countries, ''), 'JP'), ','))) THEN
        RETURN;
    END IF;
    SELECT st.balance, st.held, st.has_purchased INTO s
      FROM credit_states st WHERE st.account_id = c.account_id FOR UPDATE;
    IF NOT FOUND OR NOT s.has_purchased THEN
        RETURN;
    END IF;
    IF p_cost <= 0 OR NOT EXISTS (SELECT 1 FROM prices pr WHERE pr.product = 'sms' AND pr.country = p_country
                                     AND pr.unit_price * p_segments = p_cost) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM credit_lots l WHERE l.account_id = c.account_id AND l.remaining > 0
                  AND (l.refunded_at IS NOT NULL OR (l.kind <> 'line' AND l.expires_at <= p_now))) THEN
        RETURN;  -- a write-off is due first
    END IF;
    FOR lot IN SELECT l.id, l.remaining FROM credit_lots l
                WHERE l.account_id = c.account_id AND l.remaining > 0 AND p_now < l.expires_at
                  AND l.refunded_at IS NULL
                ORDER BY l.kind = 'line', l.expires_at, l.kind <> 'trial', l.issued_at, l.id LOOP
        EXIT WHEN v_left = 0;
        v_take := LEAST(lot.remaining, v_left);
        v_lots := v_lots || lot.id;
        v_changes := v_changes || -v_take;
        v_left := v_left - v_take;
    END LOOP;
    IF v_left > 0 THEN
        RETURN;  -- short of credit
    END IF;
    v_balance := s.balance - p_cost;
    IF EXISTS (SELECT 1 FROM balance_thresholds t WHERE t.account_id = c.account_id
                  AND ((t.armed AND t.amount > v_balance) OR (NOT t.armed AND t.amount <= v_balance))) THEN
        RETURN;  -- a threshold moves: its alert is the general path's
    END IF;
    v_day_scope := 'account:' || c.account_id;
    v_month_scope := 'credential:' || c.id;
    IF p_daily_cap IS NOT NULL AND p_cost + COALESCE((SELECT sc.spent FROM spend_counters sc
                                                       WHERE sc.scope = v_day_scope AND sc.period = p_day), 0)
                                   > p_daily_cap THEN
        RETURN;
    END IF;
    IF c.monthly_cap IS NOT NULL AND p_cost + COALESCE((SELECT sc.spent FROM spend_counters sc
                                                         WHERE sc.scope = v_month_scope AND sc.period = p_month), 0)
                                     > c.monthly_cap THEN
        RETURN;
    END IF;

    UPDATE credit_states st SET balance = v_balance, held = s.held, updated_at = p_now
     WHERE st.account_id = c.account_id;
    INSERT INTO credit_transactions (account_id, kind, amount, balance_after, held_after, idempotency_key,
                                     request_hash, reason, hold_id, occurred_at)
    VALUES (c.account_id, 'debit', -p_cost, v_balance, s.held, 'sms:' || p_msgid, p_request_hash, p_reason, NULL,
            p_now)
    RETURNING id INTO v_transaction;
    FOR i IN 1 .. cardinality(v_lots) LOOP  -- in burn order, as the general path writes them
        UPDATE credit_lots l SET remaining = l.remaining + v_changes[i] WHERE l.id = v_lots[i];
        INSERT INTO credit_entries (transaction_id, lot_id, amount) VALUES (v_transaction, v_lots[i], v_changes[i]);
    END LOOP;
    INSERT INTO sms_messages (msgid, account_id, credential_id, mode, product, otp_site_id, sender, recipient, country,
                              body, encoding, segments, cost, status, tags, callback_url, created_at, updated_at)
    VALUES (p_msgid, c.account_id, c.id, 'live', 'sms', NULL, p_sender, p_recipient, p_country, p_body,
            p_encoding, p_segments, p_cost, 'QUEUED', p_tags, p_callback_url, p_now, p_now)
    RETURNING id INTO v_message;
    INSERT INTO outbox (kind, payload, created_at, available_at, attempts)
    VALUES ('api_sms', '{"message_id": ' || v_message || '}', p_now, p_now, 0);
    INSERT INTO spend_counters AS sc (scope, period, spent) VALUES (v_day_scope, p_day, p_cost)
        ON CONFLICT (scope, period) DO UPDATE SET spent = sc.spent + excluded.spent;
    INSERT INTO spend_counters AS sc (scope, period, spent) VALUES (v_month_scope, p_month, p_cost)
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
