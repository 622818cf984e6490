"""Stand-in for Odoo 18's command-line contract, used by the tests.

This is NOT Odoo. It honours the few commands our deploy tooling runs
(``odoo``, ``odoo neutralize``, ``click-odoo-initdb``, ``click-odoo-update``)
on a real PostgreSQL, so the deploy can be tested end to end without Odoo.
"""
