"""Settings: environment variables over an optional TOML file, validated all at once.

`Settings.from_env(env)` reports every problem in one ConfigError (one line each) before anything
connects. A secret may be given inline or, for systemd credentials, as a file: NAME_FILE=/path.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from processor import routing, scrub
from processor.config_parse import Reader, load_json, merge_toml, parse_host_port, resolvable
from processor.errors import ConfigError
from processor.minting import check_signing_settings
from processor.settings_spec import (
    AUTH_MODES,
    BY_FIELD,
    DEFAULT_GENERATORS,
    SECRETS,
    SETTINGS,
    Setting,
    default,
)

__all__ = ["AUTH_MODES", "DEFAULT_GENERATORS", "Settings", "default_worker_id", "parse_host_port"]

SECRET_VARS = SECRETS


@dataclass(frozen=True)
class Settings:
    """Everything the processor needs, validated. Durations are seconds (floats), named *_s."""

    database_url: str = ""
    functions_url: str = ""
    routes: Mapping[str, str] = field(default_factory=dict)
    generators: tuple[str, ...] = DEFAULT_GENERATORS
    auth_mode: str = default("auth_mode")
    jwt_secret: str = field(default="", repr=False)
    jwt_private_key: str = field(default="", repr=False)
    jwt_kid: str = default("jwt_kid")
    processor_jwt_secret: str = field(default="", repr=False)
    processor_jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    service_role_key: str = field(default="", repr=False)
    secret_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    service_key_bearer: bool = default("service_key_bearer")
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    max_in_flight: int = default("max_in_flight")
    generator_in_flight: int = default("generator_in_flight")
    batch_size: int = default("batch_size")
    connect_timeout_s: float = default("connect_timeout_s")
    response_timeout_s: float = default("response_timeout_s")
    lease_s: float = default("lease_s")
    tick_s: float = default("tick_s")
    grace_s: float = default("grace_s")
    token_ttl_s: float = default("token_ttl_s")
    worker_id: str = default("worker_id")
    listen: bool = default("listen")
    log_format: str = default("log_format")
    log_level: str = default("log_level")
    metrics_addr: str = default("metrics_addr")
    events_retention_s: float = default("events_retention_s")

    def route(self, generator: str) -> str:
        """The URL a generator's retries are POSTed to; raise routing.Unroutable for a name never dispatched."""
        return routing.url_for(generator, functions_url=self.functions_url, routes=self.routes,
                               configured=self.generators)

    def resolve(self, generator: str) -> routing.Route:
        """route() as a value: Route(url) or Route(refusal=why no request is sent)."""
        return routing.resolve(generator, functions_url=self.functions_url, routes=self.routes,
                               configured=self.generators)

    def secret_values(self) -> list[str]:
        """Every configured secret, the database password included: scrubbed from peers' text."""
        values = [self.jwt_secret, self.processor_jwt_secret, self.jwt_private_key, self.service_role_key,
                  *self.secret_keys.values(),
                  *scrub.url_passwords(self.database_url), *scrub.url_passwords(self.functions_url),
                  *(p for url in self.routes.values() for p in scrub.url_passwords(url))]
        return [v for v in values if v]

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
        s["database_url"] = reader.secret("DATABASE_URL")
        if "database" in need and not any(p.startswith("DATABASE_URL:") for p in problems):
            _check_database_url(s["database_url"], problems)
        s["functions_url"] = reader.text("FUNCTIONS_URL")
        if s["functions_url"]:
            _check_http_url("FUNCTIONS_URL", s["functions_url"], problems, base=True)
        for name, url in routes.items():
            _check_name("PROCESSOR_ROUTES", name, problems)
            _check_http_url(f"routes.{routing.show(name)}", url, problems)
        s["routes"] = routes
        s["generators"] = tuple(g.strip() for g in reader.text("PROCESSOR_GENERATORS").split(",") if g.strip()) \
            or DEFAULT_GENERATORS
        for name in s["generators"]:
            _check_name("PROCESSOR_GENERATORS", name, problems)
        for spec in SETTINGS:  # the plain ones, as declared in processor.settings_spec
            if spec.kind in PLAIN_KINDS and spec.env != "DATABASE_URL":
                s[spec.field] = _read(reader, spec)
        s["processor_jwks"] = _jwks(reader.secret("PROCESSOR_JWKS"), problems, "PROCESSOR_JWKS")
        s["secret_keys"] = _secret_keys(reader.secret("SUPABASE_SECRET_KEYS"), problems)
        s["jwks"] = _jwks(reader.secret("SUPABASE_JWKS"), problems, "SUPABASE_JWKS")
        floor = s["connect_timeout_s"] + s["response_timeout_s"]
        lease = BY_FIELD["lease_s"]
        s["lease_s"] = reader.seconds(lease.env, floor + 30.0, lease.low, lease.high)
        if s["lease_s"] <= floor:
            problems.append(
                f"PROCESSOR_LEASE: {s['lease_s']:g} s must outlast connect + response time-out ({floor:g} s), "
                "or a slow delivery could be claimed twice"
            )
        s["worker_id"] = reader.text("PROCESSOR_WORKER_ID") or default_worker_id()
        s["metrics_addr"] = reader.text("PROCESSOR_METRICS_ADDR")
        if s["metrics_addr"]:
            host, port = parse_host_port("PROCESSOR_METRICS_ADDR", s["metrics_addr"], problems)
            if host and not resolvable(host, port):
                problems.append(f"PROCESSOR_METRICS_ADDR: {host!r} does not resolve to an address to listen on")

        keep = BY_FIELD["events_retention_s"]
        s["events_retention_s"] = reader.seconds(keep.env, keep.default, keep.low, keep.high)
        if 0 < s["events_retention_s"] < 3600:
            problems.append("PROCESSOR_EVENTS_RETENTION: at least 1h (or 0 to keep events forever)")
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
        settings = cls(**s)
        scrub.remember(settings.secret_values())  # whatever this process knows never leaves in a peer's text
        return settings


def default_worker_id() -> str:
    """host:pid:random, unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _check_database_url(url: str, problems: list[str]) -> None:
    if not url:
        problems.append("DATABASE_URL: required (postgresql://user:password@host:5432/dbname)")
        return
    try:
        parts = urlsplit(url)
        scheme, _ = parts.scheme, parts.port
        misread = "@" in parts.path or "@" in parts.fragment  # the authority ended early, inside a password
    except ValueError:
        scheme, misread = url.partition("://")[0].lower() if "://" in url else "", True
    if scheme not in ("postgres", "postgresql"):
        problems.append("DATABASE_URL: must start with postgresql:// or postgres://")
    elif misread:
        # never echoed: a URL that does not parse this way usually holds a password that does not either
        problems.append("DATABASE_URL: cannot be parsed; percent-encode '/', '#', '?', '@' and ':' in the user "
                        "or password (%2F %23 %3F %40 %3A)")


def _check_http_url(name: str, url: str, problems: list[str], *, base: bool = False) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port
    except ValueError:
        ok = False
    if not ok:
        problems.append(f"{name}: {scrub.redact_url(url)!r} is not an http(s) URL")
    elif parts.username is not None or parts.password is not None:
        # they would clash with the Authorization header every retry carries (the transport refused it; the
        # client used to replace the processor's token with them)
        problems.append(f"{name}: must not carry credentials (user:password@); the processor sends its own")
    elif base and (parts.query or parts.fragment or "?" in url or "#" in url):
        # generator names are appended as a path segment: a query or fragment here would swallow them
        problems.append(f"{name}: must not carry a query or fragment (generator names are appended as a path)")


def _check_name(setting: str, name: str, problems: list[str]) -> None:
    if not routing.is_name(name):
        problems.append(f"{setting}: {routing.show(name)} is not a generator name ({routing.NAME_PATTERN})")


def _secret_keys(raw: str, problems: list[str]) -> dict[str, str]:
    """SUPABASE_SECRET_KEYS: a JSON object {name: "sb_secret_..."}, or one bare key."""
    if not raw:
        return {}
    if not raw.startswith("{"):
        return {"default": raw}
    try:
        parsed = load_json(raw)
    except ValueError as exc:
        problems.append(f"SUPABASE_SECRET_KEYS: {exc} (expected {{\"name\": \"sb_secret_...\"}})")
        return {}
    if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
        problems.append("SUPABASE_SECRET_KEYS: expected a JSON object of non-empty strings")
        return {}
    return dict(parsed)


PLAIN_KINDS = ("int", "seconds", "flag", "choice", "text", "secret")


def _read(reader: Reader, spec: Setting) -> Any:
    """One plain setting, by its kind."""
    if spec.kind == "int":
        return reader.integer(spec.env, spec.default, int(spec.low), int(spec.high))
    if spec.kind == "seconds":
        return reader.seconds(spec.env, spec.default, spec.low, spec.high)
    if spec.kind == "flag":
        return reader.flag(spec.env, spec.default)
    if spec.kind == "choice":
        return reader.choice(spec.env, spec.choices, spec.default)
    if spec.kind == "secret":
        return reader.secret(spec.env)
    return reader.text(spec.env)


def _jwks(raw: str, problems: list[str], name: str) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        parsed = load_json(raw)
    except ValueError as exc:
        problems.append(f"{name}: {exc} (inline JWKS, or {name}_FILE naming a file)")
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        problems.append(f'{name}: expected {{"keys": [...]}}')
        return None
    if not all(isinstance(k, dict) and isinstance(k.get("kty"), str) for k in parsed["keys"]):
        problems.append(f'{name}: every key must be a JSON object with a "kty"')
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
