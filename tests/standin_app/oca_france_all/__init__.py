# Imported by the stand-in server at startup, like Odoo imports installed addons.
