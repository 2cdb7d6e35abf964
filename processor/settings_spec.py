"""Every setting, declared once: its environment variable, TOML key, kind, default, bounds and meaning.

processor.config reads the plain ones from this table and derives its TOML key map and its list of secrets
from it; the README's settings table is generated from it (`python -m processor.settings_spec`) and a test
holds the README to it; a test holds the deployment example to it too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

DEFAULT_GENERATORS = ("generate-website", "generate-react-website", "generate-php-website")
AUTH_MODES = ("scoped-jwt", "service-key")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Setting:
    env: str
    field: str  # the Settings attribute ("" for one that only selects something, like PROCESSOR_CONFIG)
    kind: str  # int | seconds | flag | choice | text | secret | custom (read by code of its own in config)
    default: Any
    doc: str
    shown_default: str = ""  # the README's default column
    low: float = 0
    high: float = 0
    choices: tuple[str, ...] = ()
    toml: str | None = None  # its key in the TOML file; None: environment only (secrets)
    secret: bool = False  # hidden by `processor check`, scrubbed from peers' text; NAME_FILE accepted

    def __post_init__(self) -> None:
        if self.kind == "secret":
            object.__setattr__(self, "secret", True)


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "database_url", "secret", "", "`postgresql://…`; direct or session-mode "
            "connection (or `DATABASE_URL_FILE`)", "(required)", toml="database_url"),
    Setting("FUNCTIONS_URL", "functions_url", "custom", "", "retries go to `{FUNCTIONS_URL}/{generator}` (no "
            "`user:password@`: the processor sends its own credentials)", toml="functions_url"),
    Setting("PROCESSOR_ROUTES", "routes", "custom", None, "JSON object or TOML table `[routes]`: a URL per "
            "generator, overriding `FUNCTIONS_URL`"),
    Setting("PROCESSOR_GENERATORS", "generators", "custom", DEFAULT_GENERATORS, "names the reference "
            "generator serves and `check` probes", "the three generators", toml="generators"),
    Setting("PROCESSOR_AUTH_MODE", "auth_mode", "choice", "scoped-jwt", "or `service-key`", "`scoped-jwt`",
            choices=AUTH_MODES, toml="auth_mode"),
    Setting("PROCESSOR_JWT_PRIVATE_KEY", "jwt_private_key", "secret", "", "the processor's ES256 signing key "
            "(PEM, from `processor keygen`): required in `scoped-jwt` mode unless `PROCESSOR_JWT_SECRET` is set"),
    Setting("PROCESSOR_JWT_KID", "jwt_kid", "text", "", "the signing key's `kid` (printed by `processor "
            "keygen`)", toml="jwt_kid"),
    Setting("PROCESSOR_JWT_SECRET", "processor_jwt_secret", "secret", "", "a dedicated HS256 secret (32+ "
            "characters) shared with the generators, instead of the key"),
    Setting("PROCESSOR_JWKS", "processor_jwks", "custom", None, "the processor's public JWKS, for the "
            "reference generator (default: from the private key)"),
    Setting("SUPABASE_JWT_SECRET", "jwt_secret", "secret", "", "the platform's legacy secret, only to verify "
            "HS256 user tokens (the reference generator)"),
    Setting("SUPABASE_SECRET_KEYS", "secret_keys", "custom", None, "`{\"default\": \"sb_secret_…\"}` or one "
            "key; the first is sent in `service-key` mode", secret=True),
    Setting("SUPABASE_SERVICE_ROLE_KEY", "service_role_key", "secret", "", "legacy service-role key (used "
            "when no secret key is set)"),
    Setting("PROCESSOR_SERVICE_KEY_BEARER", "service_key_bearer", "flag", False, "also send the key as a "
            "Bearer (seed-style generators)", "`false`", toml="service_key_bearer"),
    Setting("SUPABASE_JWKS", "jwks", "custom", None, "JWKS (inline JSON, or `SUPABASE_JWKS_FILE`) for "
            "asymmetric user tokens (the reference generator)"),
    Setting("PROCESSOR_RESPONSE_TIMEOUT", "response_timeout_s", "seconds", 30.0, "how long to wait for a "
            "generator's answer (edge functions: up to 150 s or 400 s)", "`30s`", 0.1, 900,
            toml="response_timeout"),
    Setting("PROCESSOR_CONNECT_TIMEOUT", "connect_timeout_s", "seconds", 5.0, "how long to wait for a "
            "connection to a generator", "`5s`", 0.1, 120, toml="connect_timeout"),
    Setting("PROCESSOR_LEASE", "lease_s", "custom", 0.0, "a claim's lease; must outlast both time-outs",
            "connect + response + 30 s", 1, 3600, toml="lease"),
    Setting("PROCESSOR_MAX_IN_FLIGHT", "max_in_flight", "int", 64, "concurrent deliveries, in all", "`64`",
            1, 10_000, toml="max_in_flight"),
    Setting("PROCESSOR_GENERATOR_IN_FLIGHT", "generator_in_flight", "int", 32, "concurrent deliveries to one "
            "generator", "`32`", 1, 10_000, toml="generator_in_flight"),
    Setting("PROCESSOR_BATCH_SIZE", "batch_size", "int", 100, "rows per claim", "`100`", 1, 10_000,
            toml="batch_size"),
    Setting("PROCESSOR_TICK", "tick_s", "seconds", 60.0, "safety tick: how often to look when no deadline "
            "is known (and to probe LISTEN)", "`60s`", 0.05, 3600, toml="tick"),
    Setting("PROCESSOR_GRACE", "grace_s", "seconds", 20.0, "on SIGTERM: time for in-flight deliveries "
            "before they are released", "`20s`", 0, 3600, toml="grace"),
    Setting("PROCESSOR_TOKEN_TTL", "token_ttl_s", "seconds", 300.0, "scoped token lifetime", "`300s`", 10,
            3600, toml="token_ttl"),
    Setting("PROCESSOR_WORKER_ID", "worker_id", "custom", "", "written on claims and events",
            "host:pid:random", toml="worker_id"),
    Setting("PROCESSOR_LISTEN", "listen", "flag", True, "`false` is the same as `--no-listen`", "`true`",
            toml="listen"),
    Setting("PROCESSOR_LOG_FORMAT", "log_format", "choice", "auto", "`json` off a terminal, `console` on one",
            "`auto`", choices=LOG_FORMATS, toml="log_format"),
    Setting("PROCESSOR_LOG_LEVEL", "log_level", "choice", "info", "`debug`, `info`, `warning` or `error`",
            "`info`", choices=LOG_LEVELS, toml="log_level"),
    Setting("PROCESSOR_METRICS_ADDR", "metrics_addr", "custom", "", "`HOST:PORT` for `/metrics` and "
            "`/healthz` (or `--metrics-addr`)", toml="metrics_addr"),
    Setting("PROCESSOR_EVENTS_RETENTION", "events_retention_s", "custom", 30 * 86400.0, "prune "
            "`genretry.events` older than this, hourly; `0` keeps them forever; at least `1h`", "`30d`", 0,
            3650 * 86400.0, toml="events_retention"),
    Setting("PROCESSOR_CONFIG", "", "custom", "", "a TOML file with the settings above (their TOML keys) "
            "and `[routes]`; the environment wins"),
)

BY_FIELD = {s.field: s for s in SETTINGS if s.field}
BY_ENV = {s.env: s for s in SETTINGS}
TOML_KEYS = {s.toml: s.env for s in SETTINGS if s.toml}
SECRETS = tuple(s.env for s in SETTINGS if s.secret and s.env != "DATABASE_URL")


def default(field: str) -> Any:
    """The default of a Settings attribute, as declared here."""
    return BY_FIELD[field].default


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| setting | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{s.env}` | {s.shown_default} | {s.doc} |" for s in SETTINGS]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m processor.settings_spec > table.md
    sys.stdout.write(markdown_table() + "\n")
