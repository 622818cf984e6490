"""Recette (staging): refreshed from production data and redeployed when 18.0 moves."""

odoo_db_name = "oca-france-recette"
odoo_running_env = "recette"
odoo_server_env_parameters = {"ribbon.name": "RECETTE"}  # shows a RECETTE ribbon in the UI
# Recette's own address (the seed README's SSH config says test.oca-fance.fr: check it).
odoo_public_url = "https://test.oca-france.fr"
# Required: front_trusted_proxies, the provider's reverse proxy as this host sees it (e.g.
# ["10.0.3.1"], the LXD host's bridge address): the front door believes its X-Forwarded-For.
recette_automation = True
deploy_restore_allowed = True  # recette runs on neutralized production data
