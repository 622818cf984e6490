{
    "name": "OCA France base (test addon)",
    "version": "18.0.1.0.0",
    "license": "AGPL-3",
    "depends": ["mail", "contacts", "l10n_fr"],
    "data": ["data/oca_france_data.xml"],
    "installable": True,
}
