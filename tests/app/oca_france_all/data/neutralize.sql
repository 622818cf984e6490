-- The app's own neutralization (run by `odoo neutralize`, after Odoo's): no production
-- credential survives in a copy.
DELETE FROM ir_config_parameter WHERE key = 'oca_france.partner_api_token';
