"""processor keygen: write the processor's private key, print the public JWKS (stdout) and the settings (stderr)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from processor.errors import UsageError
from processor.minting import keygen


def run(out: str, previous_jwks: str | None, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """Make a key pair; the JWKS goes to stdout alone, so `processor keygen --out k.pem > jwks.json` works."""
    previous: dict[str, Any] | None = None
    if previous_jwks:
        try:
            previous = json.loads(Path(previous_jwks).read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise UsageError(f"--previous-jwks: cannot read a JWKS from {previous_jwks}") from exc
        if not isinstance(previous, dict) or not isinstance(previous.get("keys"), list):
            raise UsageError(f'--previous-jwks: {previous_jwks} is not {{"keys": [...]}}')
    try:
        kid, jwks = keygen(Path(out), previous_jwks=previous)
    except FileExistsError as exc:
        raise UsageError(f"--out: {out} exists; keygen never overwrites a key") from exc
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out}: {exc.strerror or exc}") from exc
    print(json.dumps(jwks), file=stdout)
    print(f"wrote the private key to {out} (mode 0600). Configure the daemon with\n"
          f"  PROCESSOR_JWT_PRIVATE_KEY_FILE={out}\n  PROCESSOR_JWT_KID={kid}\n"
          "and set the JWKS printed on stdout as the generators' secret GENRETRY_PROCESSOR_JWKS.", file=stderr)
    return 0
