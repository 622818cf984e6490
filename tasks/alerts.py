"""Nothing fails silently: a unit that fails, a disk that fills, a backup that gets old is told
to the operators (odoo-notify: e-mail through an SMTP relay with msmtp, a webhook), once; the
jobs ping their dead man's switches (ping_urls). The channels' secrets live in root-only files."""

from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from tasks.paths import alert_msmtp_config, alert_webhook_file
from tasks.util import enable_and_start, host_data, install_template

data = host_data()

if data.alert_email_to:
    apt.packages(name="Install msmtp (the alerts' e-mails, through the relay)", packages=["msmtp"])

files.directory(
    name=f"Create {data.alert_state_dir} (what the alerts sent: root's)",
    path=data.alert_state_dir,
    user="root",
    group="root",
    mode="755",
)

# Each secret in its own file, root's alone; gone when its channel is unset.
for template, path, wanted in (
    ("alerts-msmtprc.j2", alert_msmtp_config(data), bool(data.alert_email_to)),
    ("alerts-webhook.j2", alert_webhook_file(data), bool(data.alert_webhook)),
):
    if wanted:
        install_template(
            name=f"Write {path} (root's alone: a secret in it)",
            template=template,
            mode="600",
            holds_secrets=True,
        )
    else:
        files.file(name=f"Remove {path} (its channel is not set)", path=path, present=False)

units = [
    install_template(name=f"Install {name}", template=f"{name}.j2")
    for name in ("oca-france-notify@.service", "odoo-check.service", "odoo-check.timer")
]
if not data.backup_host:  # Odoo's hosts: PostgreSQL's and the front door's failures too
    units.append(
        install_template(
            name="Make PostgreSQL's clusters alert when they fail (a drop-in: OnFailure=)",
            template="postgresql-alerts.conf.j2",
        )
    )
    units.append(
        install_template(
            name="Make the front door (HAProxy) alert when it fails (a drop-in: OnFailure=)",
            template="haproxy-alerts.conf.j2",
        )
    )

systemd.daemon_reload(name="Reload systemd (the alerts' units changed)", _if=any_changed(*units))

enable_and_start("odoo-check.timer", "disks and backups' ages, every 15 minutes")
