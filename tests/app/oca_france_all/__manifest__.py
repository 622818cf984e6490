{
    "name": "OCA France all (test meta-module)",
    "version": "18.0.1.0.0",
    "license": "AGPL-3",
    "depends": ["oca_france_base"],
    "installable": True,
}
