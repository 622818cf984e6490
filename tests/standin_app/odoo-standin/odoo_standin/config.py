"""Reading of the Odoo-style INI configuration file given with ``-c``."""

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StandinError

OPTIONS = "options"
# Rows the server writes into ir_config_parameter, like OCA's server_environment does.
CONFIG_PARAMETERS = "ir.config_parameter"
# Odoo treats these spellings as "not set".
UNSET = {"", "false", "none"}


def _value(raw: str | None) -> str | None:
    """Return the option value, or None when Odoo would consider it unset."""
    if raw is None or raw.strip().lower() in UNSET:
        return None
    return raw.strip()


def _int(name: str, raw: str | None, default: int | None) -> int | None:
    value = _value(raw)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise StandinError(f"option {name} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class Config:
    """The options the stand-in uses; every other option is accepted and ignored."""

    db_host: str | None = None
    db_port: int | None = None
    db_user: str | None = None
    # repr=False: the password must never end up in a log line or a traceback.
    db_password: str | None = field(default=None, repr=False)
    db_name: str | None = None
    data_dir: Path = Path.home() / ".local/share/Odoo"
    addons_path: tuple[Path, ...] = ()
    http_interface: str = "0.0.0.0"
    http_port: int = 8069
    logfile: Path | None = None
    config_parameters: dict[str, str] = field(default_factory=dict)

    def connect_kwargs(self) -> dict[str, object]:
        """psycopg2 arguments: only the set ones, so unset means libpq's defaults
        (local unix socket, peer authentication as the current OS user)."""
        pairs = {
            "host": self.db_host,
            "port": self.db_port,
            "user": self.db_user,
            "password": self.db_password,
        }
        return {key: value for key, value in pairs.items() if value is not None}


def load(path: str | Path) -> Config:
    """Parse the configuration file at ``path``."""
    path = Path(path)
    # No interpolation: passwords may contain '%'. Keep key case for config parameters.
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise StandinError(f"cannot read config file {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise StandinError(f"invalid config file {path}: {exc.message}") from None
    if not parser.has_section(OPTIONS):
        raise StandinError(f"config file {path} has no [{OPTIONS}] section")
    return _from_options(parser[OPTIONS], _parameters(parser))


def _parameters(parser: configparser.ConfigParser) -> dict[str, str]:
    if not parser.has_section(CONFIG_PARAMETERS):
        return {}
    return {key: value.strip() for key, value in parser.items(CONFIG_PARAMETERS, raw=True)}


def _from_options(options: configparser.SectionProxy, parameters: dict[str, str]) -> Config:
    defaults = Config()
    data_dir = _value(options.get("data_dir"))
    addons_path = _value(options.get("addons_path"))
    logfile = _value(options.get("logfile"))
    return Config(
        db_host=_value(options.get("db_host")),
        db_port=_int("db_port", options.get("db_port"), None),
        db_user=_value(options.get("db_user")),
        db_password=_value(options.get("db_password")),
        db_name=_value(options.get("db_name")),
        data_dir=Path(data_dir) if data_dir else defaults.data_dir,
        # Unset addons_path: only the addons installed in the odoo.addons namespace.
        addons_path=_split_paths(addons_path or ""),
        http_interface=_value(options.get("http_interface")) or defaults.http_interface,
        http_port=_int("http_port", options.get("http_port"), defaults.http_port),
        logfile=Path(logfile) if logfile else None,
        config_parameters=parameters,
    )


def _split_paths(raw: str) -> tuple[Path, ...]:
    # Relative entries are taken against the working directory, as Odoo does.
    return tuple(Path(part.strip()).resolve() for part in raw.split(",") if part.strip())
