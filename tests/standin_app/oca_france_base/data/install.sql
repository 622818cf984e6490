-- Minimal look-alikes of the Odoo tables the tests inspect.
CREATE TABLE res_company (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO res_company (name) VALUES ('OCA France (new database)');

CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name text NOT NULL, active boolean NOT NULL);
INSERT INTO ir_mail_server (name, active) VALUES ('Outgoing SMTP', true);

CREATE TABLE ir_cron (id serial PRIMARY KEY, name text NOT NULL, active boolean NOT NULL);
INSERT INTO ir_cron (name, active) VALUES
    ('Mail: Email Queue Manager', true),
    ('Base: Auto-vacuum internal data', true);
