"""Settings and where they come from: flags > environment (DRIVEMR_*) > user config file > defaults.

The user config file is ``config.toml`` in the platform's config directory (platformdirs),
or in ``$DRIVEMR_CONFIG_DIR``. ``config/drivemr.toml`` in the repository documents every key.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from drivemr.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    kind: type
    help: str

    @property
    def env(self) -> str:
        return "DRIVEMR_" + self.name.upper()


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("store", "", str, "store URL: folder, file://, drive://ID or s3://BUCKET/PREFIX"),
        Setting("slots", 0, int, "task slots per worker (0: one per CPU)"),
        Setting("workdir", "", str, "where workers run tasks (default: the user cache dir)"),
        Setting(
            "lease",
            300.0,
            float,
            "seconds without a heartbeat before a worker's claims are reclaimed",
        ),
        Setting(
            "poll_interval",
            0.0,
            float,
            "seconds between change polls when idle (0: 0.5 on folders, 5 on Drive)",
        ),
        Setting(
            "reconcile_interval", 120.0, float, "seconds between full re-listings of the store"
        ),
        Setting(
            "retry_backoff",
            1.0,
            float,
            "base delay before retrying a failed attempt (doubles each time)",
        ),
        Setting("write_rate", 3.0, float, "Drive writes per second per account (0: unlimited)"),
        Setting("log_level", "info", str, "debug, info, warning or error"),
        Setting(
            "pass_env",
            "",
            str,
            "variables tasks get although they are on the secrets deny-list (comma-separated)",
        ),
        Setting(
            "idle_threshold",
            0.25,
            float,
            "with --when-idle: share of the whole CPU other processes may use before claiming stops",
        ),
    ]
}


def default_workdir() -> Path:
    """Where workers run tasks when ``workdir`` is not set."""
    return Path(platformdirs.user_cache_dir("drivemr")) / "work"


def auto_value(name: str, value: Any) -> str | None:
    """For a setting left to be computed (``slots = 0``, an empty ``workdir``, ...), what it
    becomes, in words; None when the value is used as it is."""
    if value:
        return None
    if name == "slots":
        return f"one per CPU ({os.cpu_count() or 1} here)"
    if name == "poll_interval":
        return "0.5 s on folder stores, 5 s on Drive"
    if name == "workdir":
        return str(default_workdir())
    return None


def config_dir() -> Path:
    override = os.environ.get("DRIVEMR_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("drivemr"))


def config_file() -> Path:
    return config_dir() / "config.toml"


def load_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_file()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}"
        )
    return data


def _convert(setting: Setting, value: Any, source: str) -> Any:
    try:
        return setting.kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {setting.name} must be {setting.kind.__name__}, not {value!r}"
        ) from None


def resolve(
    name: str, flag: Any = None, *, file_data: dict[str, Any] | None = None
) -> tuple[Any, str]:
    """The effective value of a setting and where it came from."""
    setting = SETTINGS[name]
    if flag is not None:
        return _convert(setting, flag, f"--{name.replace('_', '-')}"), "flag"
    if setting.env in os.environ:
        return _convert(setting, os.environ[setting.env], setting.env), "environment"
    data = load_file() if file_data is None else file_data
    if name in data:
        return _convert(setting, data[name], str(config_file())), "config file"
    return setting.default, "default"


def value(name: str, flag: Any = None) -> Any:
    return resolve(name, flag)[0]


def effective() -> list[tuple[str, Any, str]]:
    data = load_file()
    return [(name, *resolve(name, file_data=data)) for name in SETTINGS]
