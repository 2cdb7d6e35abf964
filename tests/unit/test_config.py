"""Settings: every problem at once, one line each; TOML file under the environment; secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.config import Settings
from processor.errors import ConfigError

BASE = {"DATABASE_URL": "postgresql://u:p@h:5432/d", "FUNCTIONS_URL": "https://ref.supabase.co/functions/v1",
        "PROCESSOR_JWT_SECRET": "s" * 40}


def problems(env: dict[str, str], need: tuple[str, ...] = ("database", "dispatch")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, need=need)
    return info.value.problems


def test_defaults() -> None:
    s = Settings.from_env(BASE, need=("database", "dispatch"))
    assert (s.auth_mode, s.tick_s, s.response_timeout_s, s.max_in_flight) == ("scoped-jwt", 60, 30, 64)
    assert s.lease_s > s.connect_timeout_s + s.response_timeout_s
    assert s.route("generate-website") == "https://ref.supabase.co/functions/v1/generate-website"
    assert s.worker_id.count(":") == 2


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"DATABASE_URL": "mysql://x", "FUNCTIONS_URL": "ftp://x", "PROCESSOR_AUTH_MODE": "magic",
                      "PROCESSOR_TICK": "soon", "PROCESSOR_BATCH_SIZE": "-1", "PROCESSOR_LISTEN": "maybe",
                      "PROCESSOR_METRICS_ADDR": "nowhere"})
    names = [p.split(":")[0] for p in found]
    assert names == ["DATABASE_URL", "FUNCTIONS_URL", "PROCESSOR_AUTH_MODE", "PROCESSOR_BATCH_SIZE",
                     "PROCESSOR_TICK", "PROCESSOR_LISTEN", "PROCESSOR_METRICS_ADDR", "PROCESSOR_JWT_PRIVATE_KEY"]
    assert all("\n" not in p for p in found)


def test_lease_must_outlast_the_time_outs() -> None:
    found = problems({**BASE, "PROCESSOR_RESPONSE_TIMEOUT": "150s", "PROCESSOR_LEASE": "2m"})
    assert found == ["PROCESSOR_LEASE: 120 s must outlast connect + response time-out (155 s), "
                     "or a slow delivery could be claimed twice"]
    assert Settings.from_env({**BASE, "PROCESSOR_RESPONSE_TIMEOUT": "150s"}).lease_s == 185


def test_durations_accept_units() -> None:
    s = Settings.from_env({**BASE, "PROCESSOR_TICK": "500ms", "PROCESSOR_GRACE": "2m"})
    assert (s.tick_s, s.grace_s) == (0.5, 120)


def test_toml_file_with_routes_and_environment_winning(tmp_path: Path) -> None:
    config = tmp_path / "processor.toml"
    config.write_text('functions_url = "https://a.example/functions/v1"\nmax_in_flight = 16\ntick = "30s"\n'
                      '[routes]\n"generate-php-website" = "https://php.example/run"\n')
    s = Settings.from_env({**BASE, "PROCESSOR_CONFIG": str(config), "PROCESSOR_TICK": "10"})
    assert s.functions_url == "https://ref.supabase.co/functions/v1"  # environment wins
    assert (s.max_in_flight, s.tick_s) == (16, 10)
    assert s.route("generate-php-website") == "https://php.example/run"


def test_toml_problems_are_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("colour = 'blue'\n")
    assert problems({**BASE, "PROCESSOR_CONFIG": str(config)}) == [
        f"PROCESSOR_CONFIG: unknown setting 'colour' in {config}"]
    config.write_text("= broken")
    assert problems({**BASE, "PROCESSOR_CONFIG": str(config)})[0].startswith("PROCESSOR_CONFIG: ")


def test_secrets_from_files_for_systemd_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "jwt_secret"
    secret.write_text("f" * 48 + "\n")
    env = {**BASE, "SUPABASE_JWT_SECRET": "", "SUPABASE_JWT_SECRET_FILE": str(secret)}
    assert Settings.from_env(env).jwt_secret == "f" * 48
    missing = {**BASE, "SUPABASE_JWT_SECRET": "", "SUPABASE_JWT_SECRET_FILE": str(tmp_path / "nope")}
    assert problems(missing)[0].startswith("SUPABASE_JWT_SECRET: cannot read")


def test_service_key_mode_needs_a_key() -> None:
    env = {**BASE, "PROCESSOR_AUTH_MODE": "service-key"}
    assert problems(env) == ["SUPABASE_SECRET_KEYS: required for PROCESSOR_AUTH_MODE=service-key "
                             "(or SUPABASE_SERVICE_ROLE_KEY)"]
    s = Settings.from_env({**env, "SUPABASE_SECRET_KEYS": '{"default": "sb_secret_x", "b": "sb_secret_y"}'})
    assert s.service_key == "sb_secret_x"
    assert problems({**env, "SUPABASE_SECRET_KEYS": "{oops"})[0].startswith("SUPABASE_SECRET_KEYS: not valid JSON")


def test_settings_never_show_secrets_in_repr() -> None:
    s = Settings.from_env({**BASE, "SUPABASE_SERVICE_ROLE_KEY": "eyJsecret"})
    assert "s" * 40 not in repr(s) and "eyJsecret" not in repr(s)


# --- hostile configuration (issue 10, class 13): one line naming the setting, never a traceback -------------

DEEP = "[" * 100_000


@pytest.mark.hostile
@pytest.mark.parametrize(("name", "value"), [
    ("SUPABASE_JWKS", DEEP),
    ("SUPABASE_JWKS", '{"keys": [' + "[" * 50 + "]" * 50 + "]}"),
    ("SUPABASE_JWKS", '{"keys": [{"kty": "EC", "x": ' + DEEP + "}]}"),
    ("SUPABASE_JWKS", '{"keys": [1, "two"]}'),
    ("SUPABASE_SECRET_KEYS", "{" + '"a":{' * 100_000),
    ("SUPABASE_SECRET_KEYS", '{"default": ' + "[" * 40 + "]" * 40 + "}"),
    ("PROCESSOR_ROUTES", "{" + '"a":{' * 100_000),
])
def test_nested_json_settings_are_one_line_problems(name: str, value: str) -> None:
    found = problems({**BASE, "PROCESSOR_AUTH_MODE": "service-key", "SUPABASE_SECRET_KEYS": "sb_secret_x",
                      name: value})
    assert [p.split(":")[0] for p in found][:1] == [name]
    assert all("\n" not in p and len(p) < 300 for p in found)


@pytest.mark.hostile
def test_a_toml_file_that_is_not_utf8_or_nests_too_deep_is_named(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('functions_url = "https://caf\xe9.example"\n'.encode("latin-1"))
    assert [p.split(":")[0] for p in problems({**BASE, "PROCESSOR_CONFIG": str(config)})] == ["PROCESSOR_CONFIG"]
    config.write_bytes(b"generators = " + b"[" * 100_000)
    assert [p.split(":")[0] for p in problems({**BASE, "PROCESSOR_CONFIG": str(config)})] == ["PROCESSOR_CONFIG"]


@pytest.mark.hostile
def test_a_metrics_address_that_does_not_resolve_is_a_problem() -> None:
    found = problems({**BASE, "PROCESSOR_METRICS_ADDR": "no-such-host.invalid:9100"})
    assert found == ["PROCESSOR_METRICS_ADDR: 'no-such-host.invalid' does not resolve to an address to listen on"]
    assert Settings.from_env({**BASE, "PROCESSOR_METRICS_ADDR": "127.0.0.1:0"}).metrics_addr == "127.0.0.1:0"


@pytest.mark.hostile
def test_generator_names_in_configuration_are_routing_keys() -> None:
    found = problems({**BASE, "PROCESSOR_GENERATORS": "generate-website,../admin,Gen\x1b[2J",
                      "PROCESSOR_ROUTES": '{"a?b": "https://x.example/run"}'})
    assert [p.split(":")[0] for p in found] == ["PROCESSOR_ROUTES", "PROCESSOR_GENERATORS", "PROCESSOR_GENERATORS"]
    assert all("\x1b" not in p for p in found)
    assert problems({**BASE, "FUNCTIONS_URL": "https://ref.supabase.co/functions/v1?x="}) == [
        "FUNCTIONS_URL: must not carry a query or fragment (generator names are appended as a path)"]


@pytest.mark.hostile
def test_credentials_in_a_route_are_refused_without_echo() -> None:
    found = problems({**BASE, "FUNCTIONS_URL": "https://user:s3cret-pw@ref.supabase.co/functions/v1",
                      "PROCESSOR_ROUTES": '{"generate-website": "https://token@x.example/run"}'})
    assert found == ["FUNCTIONS_URL: must not carry credentials (user:password@); the processor sends its own",
                     "routes.'generate-website': must not carry credentials (user:password@); the processor sends "
                     "its own"]
    assert not any("s3cret" in p or "token" in p for p in found)


def test_every_configured_secret_is_known_to_the_scrubber() -> None:
    s = Settings.from_env({**BASE, "DATABASE_URL": "postgresql://u:pa%2Fss%23w@h:5432/d",
                           "SUPABASE_SECRET_KEYS": '{"a": "sb_secret_one"}'})
    assert {"s" * 40, "sb_secret_one", "pa/ss#w", "pa%2Fss%23w"} <= set(s.secret_values())


@pytest.mark.hostile
@pytest.mark.parametrize("url", ["postgresql://u:pa/ss#w@h:5432/d", "postgresql://u:p#ss@h/d",
                                 "postgresql://u:1234/5678@h:5432/d", "postgresql://u:a:b/c#d@e/d"])
def test_a_database_url_that_does_not_parse_is_refused_without_echo(url: str) -> None:
    found = problems({**BASE, "DATABASE_URL": url})
    assert [p.split(":")[0] for p in found] == ["DATABASE_URL"]
    assert url.split("@")[0].split(":", 2)[2] not in found[0]


@pytest.mark.hostile
def test_check_lists_the_database_url_without_its_password() -> None:
    from processor.check import describe_settings

    for url in ("postgresql://u:pa/ss#w0rd@h:5432/d", "postgresql://u:pa%2Fss%23w0rd@h:5432/d"):
        shown = dict(describe_settings(Settings(database_url=url)))["database_url"]
        assert shown.startswith("postgresql://u:***@") and "ss" not in shown.split("@")[0], shown


def test_every_secret_and_the_database_url_come_from_files_never_guessed(tmp_path: Path) -> None:
    url = tmp_path / "database_url"
    url.write_text("postgresql://app:s3cr%2Ft@db.internal:5432/app\n")
    env = {**BASE, "DATABASE_URL": "", "DATABASE_URL_FILE": str(url)}
    assert Settings.from_env(env).database_url == "postgresql://app:s3cr%2Ft@db.internal:5432/app"
    assert problems({**env, "DATABASE_URL": "postgresql://x@y/z"}) == [
        "DATABASE_URL: set either DATABASE_URL or DATABASE_URL_FILE, not both"]
    # a secret value that starts with "/" is a secret, not a path to read
    assert Settings.from_env({**BASE, "SUPABASE_SERVICE_ROLE_KEY": "/etc/hostname"}).service_role_key == \
        "/etc/hostname"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    assert problems({**BASE, "SUPABASE_JWKS_FILE": str(binary)}) == [
        f"SUPABASE_JWKS: SUPABASE_JWKS_FILE {binary} is not UTF-8 text"]


def test_events_retention_setting() -> None:
    assert Settings.from_env(BASE).events_retention_s == 30 * 86400
    assert Settings.from_env({**BASE, "PROCESSOR_EVENTS_RETENTION": "7d"}).events_retention_s == 7 * 86400
    assert Settings.from_env({**BASE, "PROCESSOR_EVENTS_RETENTION": "0"}).events_retention_s == 0
    assert problems({**BASE, "PROCESSOR_EVENTS_RETENTION": "10m"}) == [
        "PROCESSOR_EVENTS_RETENTION: at least 1h (or 0 to keep events forever)"]
