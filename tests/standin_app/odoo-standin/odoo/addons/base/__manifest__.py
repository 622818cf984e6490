# Stand-in for Odoo's core addon (this is NOT Odoo): shipped, like Odoo's own
# odoo/addons/base, by the server package, so it lands in the venv's site-packages.
{"name": "Base (stand-in)", "version": "18.0.1.0.0", "depends": []}
