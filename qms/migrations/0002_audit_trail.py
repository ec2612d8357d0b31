"""The audit trail in PostgreSQL: the append-only, hash-chained event table, the capture trigger
function that every audited table calls, and the append-only guard on signatures."""

from django.db import migrations

AUDIT_SQL = r"""
CREATE TABLE qms_audit_event (
    seq bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    actor_id bigint NULL,
    actor_username text NOT NULL DEFAULT '',
    model text NOT NULL,
    object_id text NOT NULL,
    action text NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    changes jsonb NOT NULL,
    reason text NOT NULL DEFAULT '',
    sponsor_id bigint NULL,
    prev_hash text NOT NULL UNIQUE,
    hash text NOT NULL UNIQUE
);
CREATE INDEX qms_audit_event_object ON qms_audit_event (model, object_id, seq);
CREATE INDEX qms_audit_event_sponsor ON qms_audit_event (sponsor_id, seq);

-- The text an event's hash is computed over: every column but the hash itself.
CREATE FUNCTION qms_audit_canonical(e qms_audit_event) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(E'\x1f',
        e.seq::text,
        e.prev_hash,
        to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        coalesce(e.actor_id::text, ''),
        e.actor_username,
        e.model,
        e.object_id,
        e.action,
        e.changes::text,
        e.reason,
        coalesce(e.sponsor_id::text, ''))
$$;

-- Every insert is chained here, whoever makes it: appends are serialized by a transaction-level
-- advisory lock, so concurrent writers never fork the chain and a rolled-back writer leaves no gap.
-- Time, actor and reason come from the server and the pghistory context, not from the caller.
CREATE FUNCTION qms_audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ctx jsonb := nullif(current_setting('pghistory.context_metadata', true), '')::jsonb;
    head record;
BEGIN
    NEW.actor_id := (ctx ->> 'user')::bigint;
    NEW.actor_username := coalesce(
        (SELECT username FROM auth_user WHERE id = NEW.actor_id), '');
    NEW.reason := coalesce(ctx ->> 'reason', '');
    PERFORM pg_advisory_xact_lock(8317265);
    SELECT seq, hash INTO head FROM qms_audit_event ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(head.seq, 0) + 1;
    NEW.prev_hash := coalesce(head.hash, repeat('0', 64));
    NEW.occurred_at := clock_timestamp();
    NEW.hash := encode(sha256(convert_to(qms_audit_canonical(NEW), 'UTF8')), 'hex');
    RETURN NEW;
END
$$;

CREATE FUNCTION qms_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER qms_audit_event_chain BEFORE INSERT ON qms_audit_event
    FOR EACH ROW EXECUTE FUNCTION qms_audit_chain();
CREATE TRIGGER qms_audit_event_no_change BEFORE UPDATE OR DELETE ON qms_audit_event
    FOR EACH ROW EXECUTE FUNCTION qms_append_only();
CREATE TRIGGER qms_audit_event_no_truncate BEFORE TRUNCATE ON qms_audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION qms_append_only();
ALTER TABLE qms_audit_event ENABLE ALWAYS TRIGGER qms_audit_event_chain;
ALTER TABLE qms_audit_event ENABLE ALWAYS TRIGGER qms_audit_event_no_change;
ALTER TABLE qms_audit_event ENABLE ALWAYS TRIGGER qms_audit_event_no_truncate;

-- Capture: called AFTER each row change of an audited table with
-- (model label, sponsor column, primary-key column, excluded columns as CSV).
CREATE FUNCTION qms_audit_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sponsor_column text := TG_ARGV[1];
    pk_column text := TG_ARGV[2];
    excluded text[] := string_to_array(TG_ARGV[3], ',');
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    cur_row jsonb := coalesce(new_row, old_row);
    changes jsonb := '{}'::jsonb;
    k text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(cur_row) LOOP
        CONTINUE WHEN k = ANY (excluded);
        CONTINUE WHEN TG_OP = 'UPDATE' AND (old_row -> k) IS NOT DISTINCT FROM (new_row -> k);
        changes := changes || jsonb_build_object(k, jsonb_build_array(old_row -> k, new_row -> k));
    END LOOP;
    IF TG_OP = 'UPDATE' AND changes = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    INSERT INTO qms_audit_event (seq, occurred_at, model, object_id, action, changes,
                                 sponsor_id, prev_hash, hash)
    VALUES (0, clock_timestamp(), TG_ARGV[0], cur_row ->> pk_column,
            CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
            changes,
            CASE WHEN sponsor_column = '' THEN NULL ELSE (cur_row ->> sponsor_column)::bigint END,
            '', '');
    RETURN NULL;
END
$$;

-- Signatures are never changed or removed once made (21 CFR 11.70).
CREATE TRIGGER qms_signature_no_change BEFORE UPDATE OR DELETE ON qms_signature
    FOR EACH ROW EXECUTE FUNCTION qms_append_only();
ALTER TABLE qms_signature ENABLE ALWAYS TRIGGER qms_signature_no_change;
"""


class Migration(migrations.Migration):
    dependencies = [("qms", "0001_initial")]

    operations = [migrations.RunSQL(AUDIT_SQL)]
