"""Production: deployed by hand, by tag (18.0-YYYYMMDD)."""

odoo_db_name = "oca-france-production"
odoo_running_env = "prod"
odoo_server_env_parameters = {"ribbon.name": "False"}  # no ribbon in production
deploy_ref_pattern = r"^18\.0-[0-9]{8}(\.[0-9]+)?$"  # release tags only: 18.0-YYYYMMDD[.N]
backup_enabled = True  # daily backups, kept 7 daily / 4 weekly / 3 monthly
backup_transfer_enabled = True  # each new backup goes to recette (set backup_transfer_host*)
offsite_enabled = True  # each new backup pushed to the backup host (set offsite_host*)
# Required: front_trusted_proxies, the provider's reverse proxy as this host sees it (e.g.
# ["10.0.3.1"], the LXD host's bridge address): the front door believes its X-Forwarded-For.
