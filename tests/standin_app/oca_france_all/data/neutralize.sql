-- Harmless and visible on /web/login: shows this addon's neutralize step ran.
INSERT INTO ir_config_parameter (key, value) VALUES ('oca_france_all.neutralized', 'True')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
