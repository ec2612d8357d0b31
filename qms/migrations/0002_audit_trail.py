"""The audit trail in PostgreSQL: the append-only, hash-chained event table, the capture trigger
functions that every audited table calls, and the append-only guard on signatures."""

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

-- The text an event's hash is computed over: every column but the hash itself, in this order,
-- each as its length in characters, a colon and the text ('~' for NULL), so no text can move
-- across a field boundary without changing the hash. qms.audit.canonical_text() builds the
-- same text in Python: the verifier does not trust this function. Built-ins only, so it needs
-- no search_path of its own and stays cheap.
CREATE FUNCTION qms_audit_canonical(e qms_audit_event) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(CASE WHEN v IS NULL THEN '~' ELSE length(v)::text || ':' || v END, ''
                      ORDER BY n)
    FROM unnest(ARRAY[
        e.seq::text,
        e.prev_hash,
        to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor_id::text,
        e.actor_username,
        e.model,
        e.object_id,
        e.action,
        e.changes::text,
        e.reason,
        e.sponsor_id::text
    ]) WITH ORDINALITY AS f(v, n)
$$;

-- Every event is chained here. Only the capture functions may append (pg_trigger_depth() >= 2:
-- a trigger function inserted it), so no caller can forge an event with a plain INSERT.
-- Appends are serialized by a transaction-level advisory lock, held until commit, so concurrent
-- writers never fork the chain and a rolled-back writer leaves no gap. Time, actor and reason
-- come from the server and the pghistory context, not from the caller.
CREATE FUNCTION qms_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    ctx jsonb;
    head record;
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'qms_audit_event is written only by the audit capture triggers: '
                        'direct INSERT refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    ctx := nullif(current_setting('pghistory.context_metadata', true), '')::jsonb;
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

-- Append the event of one row change: (model label, sponsor column, primary-key column,
-- excluded columns, 'INSERT' | 'UPDATE' | 'DELETE', old row, new row). An update that changes
-- no audited column writes nothing. SECURITY DEFINER, so row-level security on the audit table
-- or the audited tables cannot hide the chain head or refuse the event.
CREATE FUNCTION qms_audit_append(label text, sponsor_column text, pk_column text,
                                 excluded text[], op text, old_row jsonb, new_row jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    cur_row jsonb := coalesce(new_row, old_row);
    changes jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_array(old_row -> k, new_row -> k)),
                    '{}'::jsonb)
      INTO changes
      FROM jsonb_object_keys(cur_row) AS k
     WHERE NOT (k = ANY (excluded))
       AND (op <> 'UPDATE' OR (old_row -> k) IS DISTINCT FROM (new_row -> k));
    IF op = 'UPDATE' AND changes = '{}'::jsonb THEN
        RETURN;
    END IF;
    INSERT INTO qms_audit_event (seq, occurred_at, model, object_id, action, changes,
                                 sponsor_id, prev_hash, hash)
    VALUES (0, clock_timestamp(), label, cur_row ->> pk_column,
            CASE op WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
            changes,
            CASE WHEN sponsor_column = '' THEN NULL ELSE (cur_row ->> sponsor_column)::bigint END,
            '', '');
END
$$;

-- Capture: AFTER each row change of an audited table, with
-- (model label, sponsor column, primary-key column, excluded columns as CSV).
CREATE FUNCTION qms_audit_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM qms_audit_append(
        TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], string_to_array(TG_ARGV[3], ','), TG_OP,
        CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

-- TRUNCATE fires no row triggers: BEFORE it empties an audited table, record a delete event
-- for every row, so truncation cannot remove records unseen.
CREATE FUNCTION qms_audit_capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    excluded text[] := string_to_array(TG_ARGV[3], ',');
    old_row jsonb;
BEGIN
    FOR old_row IN EXECUTE format('SELECT to_jsonb(t) FROM %I.%I AS t ORDER BY t.%I',
                                  TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[2]) LOOP
        PERFORM qms_audit_append(TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], excluded, 'DELETE',
                                 old_row, NULL);
    END LOOP;
    RETURN NULL;
END
$$;

-- Name resolution inside the functions must not follow the caller's search_path: a session
-- could otherwise shadow qms_audit_event or auth_user with a temporary table of that name.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'qms_audit_chain()',
        'qms_append_only()',
        'qms_audit_append(text, text, text, text[], text, jsonb, jsonb)',
        'qms_audit_capture()',
        'qms_audit_capture_truncate()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                       fn, current_schema());
    END LOOP;
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
