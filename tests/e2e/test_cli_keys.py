"""The processor's signing key: `processor keygen`, and keys that cannot sign refused at start (exit 2)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support import cli
from tests.support.http import Stub
from tests.support.keys import processor_pair


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


UNSIGNABLE: dict[str, tuple[Callable[[], str], str]] = {
    "rsa": (lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "PROCESSOR_JWT_PRIVATE_KEY"),
    "p384": (lambda: _pem(ec.generate_private_key(ec.SECP384R1())), "PROCESSOR_JWT_PRIVATE_KEY"),
    "encrypted": (lambda: _pem(ec.generate_private_key(ec.SECP256R1()), b"pw"), "PROCESSOR_JWT_PRIVATE_KEY"),
    "garbage": (lambda: "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n",
                "PROCESSOR_JWT_PRIVATE_KEY"),
    "truncated": (lambda: processor_pair()[0][:120] + "\n-----END PRIVATE KEY-----\n", "PROCESSOR_JWT_PRIVATE_KEY"),
    "no-kid": (lambda: processor_pair()[0], "PROCESSOR_JWT_KID"),
}


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("kind", sorted(UNSIGNABLE))
async def test_a_key_that_cannot_sign_is_one_line_and_exit_2(db_url: str, kind: str, command: str) -> None:
    make, setting = UNSIGNABLE[kind]
    pem = make()
    env = cli.daemon_env_for(db_url, PROCESSOR_JWT_PRIVATE_KEY=pem,
                             PROCESSOR_JWT_KID="" if kind == "no-kid" else "gp-1")
    result = await cli.run(command, env=env)
    assert result.code == 2, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"processor: config: {setting}: "), result.err
    body = "".join(pem.splitlines()[1:-1])
    assert body[:24] not in result.err + result.out and "Traceback" not in result.err
    assert result.out == ""  # nothing printed, nothing connected: check lists no configuration


async def test_keygen_writes_a_key_the_daemon_accepts(db_url: str, tmp_path: Path, stub: Stub) -> None:
    key = tmp_path / "processor.pem"
    made = await cli.run("keygen", "--out", str(key), env=cli.env_for(db_url))
    assert made.code == 0, made.err
    jwks = json.loads(made.out)
    assert [k["kty"] for k in jwks["keys"]] == ["EC"] and "d" not in jwks["keys"][0]
    kid = jwks["keys"][0]["kid"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and f"PROCESSOR_JWT_KID={kid}" in made.err
    assert key.read_text() not in made.out + made.err
    env = cli.daemon_env_for(db_url, stub.url, PROCESSOR_JWT_PRIVATE_KEY="", PROCESSOR_JWT_PRIVATE_KEY_FILE=str(key),
                             PROCESSOR_JWT_KID=kid)
    checked = await cli.run("check", env=env)
    assert checked.code == 0 and "ok   authority: scoped-jwt" in checked.out, checked.out + checked.err
    # rotation: the next key's set still holds the published one, so both verify while daemons switch
    published = tmp_path / "jwks.json"
    published.write_text(made.out)
    rotated = await cli.run("keygen", "--out", str(tmp_path / "next.pem"), "--previous-jwks", str(published),
                            env=cli.env_for(db_url))
    assert rotated.code == 0, rotated.err
    keys = json.loads(rotated.out)["keys"]
    assert len(keys) == 2 and keys[1] == jwks["keys"][0] and keys[0]["kid"] != kid
    again = await cli.run("keygen", "--out", str(key), env=cli.env_for(db_url))
    assert again.code == 2 and "exists" in again.err and key.read_text().startswith("-----BEGIN PRIVATE KEY")
