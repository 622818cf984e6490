{
    "name": "OCA France base (stand-in test addon)",
    "version": "18.0.1.0.0",
    "depends": [],
}
