"""Stand-in for Odoo's core addon ``base`` (this is NOT Odoo): available, nothing to run."""
