"""The host config: /etc/oca-france/host.json, rendered by the apply from group_data.

    python3 -m oca_france_host.config get KEY   one value

OCA_FRANCE_HOST_CONFIG names another file (the unit tests).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DEFAULT_PATH = "/etc/oca-france/host.json"


class ConfigError(Exception):
    """The config is missing, unreadable or lacks a key."""


def path() -> Path:
    return Path(os.environ.get("OCA_FRANCE_HOST_CONFIG", DEFAULT_PATH))


class Settings(dict):
    """The host config: a key it lacks (a config older than the programs) is a ConfigError,
    said with the file to re-apply, never a traceback."""

    def __missing__(self, key: str):
        raise ConfigError(f"{path()} has no {key!r} (re-apply the configuration)")


def load() -> dict:
    try:
        config = json.loads(path().read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the host config {path()}: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path()}: not a JSON object")
    return Settings(config)


def value(config: dict, key: str):
    try:
        return config[key]
    except KeyError:
        raise ConfigError(f"{path()} has no {key!r} (re-apply the configuration)") from None


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "get":
            item = value(load(), argv[1])
            print(
                json.dumps(item) if isinstance(item, (dict, list, bool)) or item is None else item
            )
            return 0
    except ConfigError as error:
        print(f"oca-france config: {error}", file=sys.stderr)
        return 2
    print(__doc__.strip(), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
