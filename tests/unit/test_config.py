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
