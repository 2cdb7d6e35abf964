"""Each setting is declared once (processor.settings_spec): the reader, the README and the deployment
example follow the table, and a drift fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processor.config import Settings
from processor.config_parse import TOML_KEYS
from processor.settings_spec import BY_FIELD, SECRETS, SETTINGS, default, markdown_table

ROOT = Path(__file__).resolve().parents[2]
BASE = {"DATABASE_URL": "postgresql://u:p@h:5432/d", "FUNCTIONS_URL": "https://ref.supabase.co/functions/v1",
        "PROCESSOR_JWT_SECRET": "s" * 40}


def test_the_readme_table_is_the_declared_one() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text(), \
        "README's settings table differs: regenerate it with `python -m processor.settings_spec`"


def test_the_deployment_example_names_only_declared_settings_and_no_secret() -> None:
    example = (ROOT / "deploy" / "processor.env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    declared = {s.env for s in SETTINGS}
    assert named <= declared, named - declared
    assert not named & set(SECRETS)  # secrets arrive as credential files, never in the env file


def test_every_attribute_has_its_declared_default() -> None:
    settings = Settings()
    for field, spec in BY_FIELD.items():
        if spec.kind in ("int", "seconds", "flag", "choice", "text"):
            assert getattr(settings, field) == spec.default, field


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.kind in ("int", "seconds")], ids=lambda s: s.env)
def test_numeric_bounds_are_enforced_as_declared(spec: object) -> None:
    from processor.errors import ConfigError
    from processor.settings_spec import Setting

    assert isinstance(spec, Setting)
    too_big = str(spec.high * 10 + 1)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, spec.env: too_big})
    assert info.value.problems[0].startswith(f"{spec.env}:")


def test_every_toml_key_reaches_its_setting(tmp_path: Path) -> None:
    assert {s.toml: s.env for s in SETTINGS if s.toml} == TOML_KEYS
    config = tmp_path / "p.toml"
    config.write_text("tick = \"7s\"\nmax_in_flight = 9\nlisten = false\n")
    s = Settings.from_env({**BASE, "PROCESSOR_CONFIG": str(config)})
    assert (s.tick_s, s.max_in_flight, s.listen) == (7.0, 9, False)
    assert default("tick_s") == 60.0
