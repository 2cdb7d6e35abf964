"""Parsing helpers of processor.config: typed readers that collect problems, and the TOML merge."""

from __future__ import annotations

import json
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from processor.config_secrets import read_secret
from processor.settings_spec import TOML_KEYS as SPEC_TOML_KEYS

MAX_JSON_DEPTH = 32  # no setting nests deeper; a deeper value is an attack on the parser, not a setting

# TOML key -> environment variable (declared in processor.settings_spec). Environment wins over the file.
TOML_KEYS = SPEC_TOML_KEYS


def load_json(raw: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads for settings; ValueError (with a reason fit for one line) also for nesting too deep."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth}") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc.args[0].split(':')[0] if exc.args else 'unparsable'})") from None
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth}")
        level = [c for v in level if isinstance(v, (dict, list))
                 for c in (v.values() if isinstance(v, dict) else v)]
    return value


def resolvable(host: str, port: int) -> bool:
    """True when HOST resolves to an address a server could listen on (checked before anything connects)."""
    try:
        return bool(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE))
    except (OSError, UnicodeError):
        return False


def parse_host_port(name: str, value: str, problems: list[str]) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"{name}: expected HOST:PORT, got {value!r}")
        return "", 0
    return host.strip("[]"), int(port)


class Reader:
    def __init__(self, values: Mapping[str, str], problems: list[str]) -> None:
        self.values = values
        self.problems = problems

    def text(self, name: str) -> str:
        return self.values.get(name, "").strip()

    def secret(self, name: str) -> str:
        """NAME inline, or NAME_FILE naming a file (processor.config_secrets)."""
        return read_secret(self.values, name, self.problems)

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name).lower() or default
        if value not in allowed:
            self.problems.append(f"{name}: {value!r} is not one of {', '.join(allowed)}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name).lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}: {value!r} is not a boolean (true/false)")
        return default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name}: {value!r} is not a whole number")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name}: {number} is outside {low}..{high}")
            return default
        return number

    def seconds(self, name: str, default: float, low: float, high: float) -> float:
        """A duration in seconds: 30, 1.5, 30s, 500ms, 2m."""
        value = self.text(name).lower()
        if not value:
            return default
        scale = 1.0
        for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)):
            if value.endswith(suffix):
                value, scale = value[: -len(suffix)].strip(), factor
                break
        try:
            number = float(value) * scale
        except ValueError:
            self.problems.append(f"{name}: {self.text(name)!r} is not a duration (e.g. 30, 30s, 500ms, 2m)")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name}: {number:g} s is outside {low:g}..{high:g} s")
            return default
        return number


def merge_toml(env: dict[str, str], problems: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    path = env.get("PROCESSOR_CONFIG", "").strip()
    values: dict[str, str] = {}
    routes: dict[str, str] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
        except OSError as exc:
            problems.append(f"PROCESSOR_CONFIG: cannot read {path}: {exc.strerror or exc}")
            data = {}
        except UnicodeDecodeError as exc:
            problems.append(f"PROCESSOR_CONFIG: {path} is not UTF-8 (byte {exc.start}); TOML files must be")
            data = {}
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"PROCESSOR_CONFIG: {path} is not valid TOML: {exc}")
            data = {}
        except RecursionError:
            problems.append(f"PROCESSOR_CONFIG: {path} nests too deep to be a configuration file")
            data = {}
        for key, value in data.items():
            if key == "routes":
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    problems.append("PROCESSOR_CONFIG: [routes] must map generator names to URLs")
                else:
                    routes.update(value)
            elif key in TOML_KEYS:
                if isinstance(value, list):
                    values[TOML_KEYS[key]] = ",".join(str(v) for v in value)
                elif isinstance(value, bool):
                    values[TOML_KEYS[key]] = "true" if value else "false"
                else:
                    values[TOML_KEYS[key]] = str(value)
            else:
                problems.append(f"PROCESSOR_CONFIG: unknown setting {key!r} in {path}")
    raw_routes = env.get("PROCESSOR_ROUTES", "").strip()
    if raw_routes:
        try:
            parsed = load_json(raw_routes)
            if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
                raise ValueError
            routes.update(parsed)
        except ValueError:
            problems.append('PROCESSOR_ROUTES: expected a JSON object {"generator": "https://..."}')
    values.update({k: v for k, v in env.items() if v.strip()})
    return values, routes
