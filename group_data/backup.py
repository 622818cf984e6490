"""The backup host: prod's off-site, encrypted, append-only copies (BorgBackup), at another
provider. It runs no Odoo; it prunes prod's repository behind a guard."""

backup_host = True
fail2ban_enabled = True  # its SSH faces the internet: prod reaches it there
