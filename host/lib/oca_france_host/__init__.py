"""The host programs of infra-oca-france: standard library only, run by the host's python3.

Installed as plain files in /opt/oca-france/lib (root-owned); every value they need comes
from one rendered config, /etc/oca-france/host.json (config.py).
"""
