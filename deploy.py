"""Configure an OCA France host: chains the task modules, by the host's group data.

pyinfra inventory.py deploy.py --limit recette   # or: make apply-recette (prod, backup)
"""

from pyinfra import host, local

from tasks.util import release_instance_lock, sudo_unless_root

sudo_unless_root()  # a non-root login (the README's sudo user): every operation through sudo
local.include("tasks/preflight.py")  # stops the run before any change when the data cannot work
local.include("tasks/common.py")

if host.data.backup_host:  # the off-site backup host: borg and its guarded prune, no Odoo
    local.include("tasks/backup_host.py")
    if host.data.fail2ban_enabled:
        local.include("tasks/fail2ban.py")
    local.include("tasks/alerts.py")
else:
    local.include("tasks/odoo_base.py")
    local.include("tasks/oca_france.py")
    local.include("tasks/front_door.py")  # once Odoo left its port for loopback

    if host.data.recette_automation:
        local.include("tasks/recette_automation.py")

    if host.data.backup_enabled:
        local.include("tasks/backups.py")

    if host.data.backup_enabled and host.data.offsite_enabled:
        local.include("tasks/offsite.py")

    if host.data.deploy_restore_allowed:
        local.include("tasks/production_data.py")

    if host.data.fail2ban_enabled:
        local.include("tasks/fail2ban.py")

    local.include("tasks/alerts.py")

    release_instance_lock(name="Release the instance's lock (deploys, backups and repairs may run)")
