-- Installed by infra-oca-france (pyinfra) in /opt/oca-france/lib: local changes are overwritten.
--
-- Run by the deploy on recette after restoring production data and neutralizing it, before
-- Odoo starts: the database becomes a copy in Odoo's sense (as Odoo's own duplicate or
-- "restore as a copy" makes one), with none of production's credentials. Production's own
-- database is never touched: this runs only on the restored copy.
\set ON_ERROR_STOP 1
BEGIN;

-- Its own identity: Odoo's services (IAP accounts and credits, the publisher's warranty) know
-- a database by its uuid, and the secret signs what it hands out (sessions, tokens, links).
-- The new values are drawn inside PostgreSQL: they never pass through a command line.
DELETE FROM ir_config_parameter
 WHERE key IN ('database.uuid', 'database.secret', 'database.create_date');
INSERT INTO ir_config_parameter (key, value, create_date, write_date)
SELECT key, value, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
  FROM (VALUES
        ('database.uuid', gen_random_uuid()::text),
        ('database.secret', gen_random_uuid()::text),
        ('database.create_date', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))
       ) AS fresh (key, value);

-- Production's credentials, where the modules that hold them are installed (neutralize turns
-- these servers and providers off; it leaves their secrets in place): outgoing and incoming
-- mail servers' passwords, OAuth tokens and codes, SSL client keys; payment providers' keys,
-- secrets and tokens (some of what is cleared there is only a setting named so: harmless,
-- the providers are off).
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN
        SELECT table_name, column_name, is_nullable
          FROM information_schema.columns
         WHERE table_schema = current_schema()
           AND data_type IN ('character varying', 'text', 'bytea')
           AND ((table_name IN ('ir_mail_server', 'fetchmail_server')
                 AND column_name ~ '(pass|token|secret|key|authorization_code)')
             OR (table_name = 'payment_provider'
                 AND column_name ~ '(secret|key|token|pass|signature|salt|hmac|sha_|access_code)'))
    LOOP
        EXECUTE format('UPDATE %I SET %I = %s WHERE %I IS NOT NULL AND %I <> %L',
                       found.table_name, found.column_name,
                       CASE WHEN found.is_nullable = 'YES' THEN 'NULL' ELSE quote_literal('') END,
                       found.column_name, found.column_name, '');
        RAISE NOTICE 'production copy: %.% cleared', found.table_name, found.column_name;
    END LOOP;
END
$$;

-- Production's own keys to outside services, kept as parameters: OAuth apps' client secrets
-- (Gmail, Outlook...), API keys (translation, maps, images), captcha private keys.
DELETE FROM ir_config_parameter
 WHERE key ~ '(_secret|api_key|private_key|access_key|secret_key)$'
   AND key NOT LIKE 'database.%';

COMMIT;
