"""Settings: environment variables over an optional TOML file, validated all at once.

`Settings.from_env(env)` reports every problem in one ConfigError (one line each) before anything
connects. A secret may be given inline or, for systemd credentials, as a file: NAME_FILE=/path.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from processor.config_parse import Reader, merge_toml, parse_host_port
from processor.errors import ConfigError
from processor.minting import check_signing_settings

__all__ = ["AUTH_MODES", "DEFAULT_GENERATORS", "Settings", "default_worker_id", "parse_host_port"]

DEFAULT_GENERATORS = ("generate-website", "generate-react-website", "generate-php-website")
AUTH_MODES = ("scoped-jwt", "service-key")
LOG_FORMATS = ("auto", "json", "console")

SECRET_VARS = (
    "SUPABASE_JWT_SECRET",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_SECRET_KEYS",
    "PROCESSOR_JWT_PRIVATE_KEY",
    "PROCESSOR_JWT_SECRET",
)


@dataclass(frozen=True)
class Settings:
    """Everything the processor needs, validated. Durations are seconds (floats), named *_s."""

    database_url: str = ""
    functions_url: str = ""
    routes: Mapping[str, str] = field(default_factory=dict)
    generators: tuple[str, ...] = DEFAULT_GENERATORS
    auth_mode: str = "scoped-jwt"
    jwt_secret: str = field(default="", repr=False)
    jwt_private_key: str = field(default="", repr=False)
    jwt_kid: str = ""
    processor_jwt_secret: str = field(default="", repr=False)
    processor_jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    service_role_key: str = field(default="", repr=False)
    secret_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    service_key_bearer: bool = False
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    max_in_flight: int = 64
    generator_in_flight: int = 32
    batch_size: int = 100
    connect_timeout_s: float = 5.0
    response_timeout_s: float = 30.0
    lease_s: float = 0.0  # 0 until resolved: response + connect + 30 s
    tick_s: float = 60.0
    grace_s: float = 20.0
    token_ttl_s: float = 300.0
    worker_id: str = ""
    listen: bool = True
    log_format: str = "auto"
    log_level: str = "info"
    metrics_addr: str = ""

    def route(self, generator: str) -> str:
        """The URL a generator's retries are POSTed to."""
        if generator in self.routes:
            return self.routes[generator]
        return f"{self.functions_url.rstrip('/')}/{generator}"

    @property
    def service_key(self) -> str:
        """The key sent in service-key mode: the first secret key, else the service-role key."""
        return next(iter(self.secret_keys.values()), "") or self.service_role_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, need: tuple[str, ...] = ("database",)) -> Settings:
        """Read and validate settings; raise ConfigError listing every problem.

        need: which parts must be complete: "database", "dispatch" (routes and authority), "verify".
        """
        env = dict(os.environ if env is None else env)
        problems: list[str] = []
        values, routes = merge_toml(env, problems)
        reader = Reader(values, problems)

        s: dict[str, Any] = {}
        s["database_url"] = reader.text("DATABASE_URL")
        if "database" in need:
            _check_database_url(s["database_url"], problems)
        s["functions_url"] = reader.text("FUNCTIONS_URL")
        if s["functions_url"]:
            _check_http_url("FUNCTIONS_URL", s["functions_url"], problems)
        for name, url in routes.items():
            _check_http_url(f"routes.{name}", url, problems)
        s["routes"] = routes
        s["generators"] = tuple(g.strip() for g in reader.text("PROCESSOR_GENERATORS").split(",") if g.strip()) \
            or DEFAULT_GENERATORS
        s["auth_mode"] = reader.choice("PROCESSOR_AUTH_MODE", AUTH_MODES, "scoped-jwt")
        s["jwt_secret"] = reader.secret("SUPABASE_JWT_SECRET")
        s["jwt_private_key"] = reader.secret("PROCESSOR_JWT_PRIVATE_KEY")
        s["jwt_kid"] = reader.text("PROCESSOR_JWT_KID")
        s["processor_jwt_secret"] = reader.secret("PROCESSOR_JWT_SECRET")
        s["processor_jwks"] = _jwks(reader.secret("PROCESSOR_JWKS"), problems, "PROCESSOR_JWKS")
        s["service_role_key"] = reader.secret("SUPABASE_SERVICE_ROLE_KEY")
        s["secret_keys"] = _secret_keys(reader.secret("SUPABASE_SECRET_KEYS"), problems)
        s["service_key_bearer"] = reader.flag("PROCESSOR_SERVICE_KEY_BEARER", False)
        s["jwks"] = _jwks(reader.secret("SUPABASE_JWKS"), problems, "SUPABASE_JWKS")
        s["max_in_flight"] = reader.integer("PROCESSOR_MAX_IN_FLIGHT", 64, 1, 10_000)
        s["generator_in_flight"] = reader.integer("PROCESSOR_GENERATOR_IN_FLIGHT", 32, 1, 10_000)
        s["batch_size"] = reader.integer("PROCESSOR_BATCH_SIZE", 100, 1, 10_000)
        s["connect_timeout_s"] = reader.seconds("PROCESSOR_CONNECT_TIMEOUT", 5.0, 0.1, 120)
        s["response_timeout_s"] = reader.seconds("PROCESSOR_RESPONSE_TIMEOUT", 30.0, 0.1, 900)
        floor = s["connect_timeout_s"] + s["response_timeout_s"]
        s["lease_s"] = reader.seconds("PROCESSOR_LEASE", floor + 30.0, 1, 3600)
        if s["lease_s"] <= floor:
            problems.append(
                f"PROCESSOR_LEASE: {s['lease_s']:g} s must outlast connect + response time-out ({floor:g} s), "
                "or a slow delivery could be claimed twice"
            )
        s["tick_s"] = reader.seconds("PROCESSOR_TICK", 60.0, 0.05, 3600)
        s["grace_s"] = reader.seconds("PROCESSOR_GRACE", 20.0, 0, 3600)
        s["token_ttl_s"] = reader.seconds("PROCESSOR_TOKEN_TTL", 300.0, 10, 3600)
        s["worker_id"] = reader.text("PROCESSOR_WORKER_ID") or default_worker_id()
        s["listen"] = reader.flag("PROCESSOR_LISTEN", True)
        s["log_format"] = reader.choice("PROCESSOR_LOG_FORMAT", LOG_FORMATS, "auto")
        s["log_level"] = reader.choice("PROCESSOR_LOG_LEVEL", ("debug", "info", "warning", "error"), "info")
        s["metrics_addr"] = reader.text("PROCESSOR_METRICS_ADDR")
        if s["metrics_addr"]:
            parse_host_port("PROCESSOR_METRICS_ADDR", s["metrics_addr"], problems)

        if "dispatch" in need:
            if not s["functions_url"]:
                missing = [g for g in s["generators"] if g not in routes]
                if missing:
                    problems.append(
                        f"FUNCTIONS_URL: required (no route configured for {', '.join(missing)})"
                    )
            _check_authority(s, problems)
        if "verify" in need and not any(s[k] for k in ("secret_keys", "service_role_key", "jwt_secret", "jwks",
                                                      "processor_jwks", "processor_jwt_secret", "jwt_private_key")):
            problems.append("SUPABASE_SECRET_KEYS: a generator needs at least one key to verify with "
                            "(SUPABASE_SECRET_KEYS, SUPABASE_SERVICE_ROLE_KEY, PROCESSOR_JWKS or PROCESSOR_JWT_SECRET)")
        if problems:
            raise ConfigError(problems)
        return cls(**s)


def default_worker_id() -> str:
    """host:pid:random, unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _check_database_url(url: str, problems: list[str]) -> None:
    if not url:
        problems.append("DATABASE_URL: required (postgresql://user:password@host:5432/dbname)")
        return
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("postgres", "postgresql"):
        problems.append("DATABASE_URL: must start with postgresql:// or postgres://")


def _check_http_url(name: str, url: str, problems: list[str]) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        problems.append(f"{name}: {url!r} is not an http(s) URL")


def _secret_keys(raw: str, problems: list[str]) -> dict[str, str]:
    """SUPABASE_SECRET_KEYS: a JSON object {name: "sb_secret_..."}, or one bare key."""
    if not raw:
        return {}
    if not raw.startswith("{"):
        return {"default": raw}
    try:
        parsed = json.loads(raw)
    except ValueError:
        problems.append("SUPABASE_SECRET_KEYS: not valid JSON (expected {\"name\": \"sb_secret_...\"})")
        return {}
    if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
        problems.append("SUPABASE_SECRET_KEYS: expected a JSON object of non-empty strings")
        return {}
    return dict(parsed)


def _jwks(raw: str, problems: list[str], name: str) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        problems.append(f"{name}: not valid JSON (inline JWKS or a path to a JWKS file)")
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        problems.append(f'{name}: expected {{"keys": [...]}}')
        return None
    return parsed


def _check_authority(s: dict[str, Any], problems: list[str]) -> None:
    if s["auth_mode"] == "scoped-jwt":  # signed with the processor's own key, never the platform's secret
        problems.extend(check_signing_settings(s["jwt_private_key"], s["jwt_kid"], s["processor_jwt_secret"],
                                               s["jwt_secret"]))
    elif not s["secret_keys"] and not s["service_role_key"]:
        problems.append(
            "SUPABASE_SECRET_KEYS: required for PROCESSOR_AUTH_MODE=service-key "
            "(or SUPABASE_SERVICE_ROLE_KEY)"
        )
