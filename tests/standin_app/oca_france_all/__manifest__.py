{
    "name": "OCA France all (stand-in test addon)",
    "version": "18.0.1.0.0",
    "depends": ["oca_france_base"],
}
