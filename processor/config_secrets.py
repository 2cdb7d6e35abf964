"""Secrets from files: NAME inline, or NAME_FILE naming a file (systemd LoadCredential, Docker secrets).

A value is never guessed to be a path: a secret that starts with `/` is a secret. Every secret, the
database URL included, may come from a file; one trailing newline (as editors and `echo` write) is dropped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

MAX_SECRET_FILE_BYTES = 1 << 20

# Settings that may come from NAME_FILE. Documented in the README's configuration table.
FILE_VARS = (
    "DATABASE_URL",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_SECRET_KEYS",
    "SUPABASE_JWKS",
    "PROCESSOR_JWT_PRIVATE_KEY",
)


def read_secret(values: Mapping[str, str], name: str, problems: list[str]) -> str:
    """NAME's value, from NAME or from the file NAME_FILE names; a problem (naming NAME) when both or unreadable."""
    inline, path = values.get(name, "").strip(), values.get(f"{name}_FILE", "").strip()
    if inline and path:
        problems.append(f"{name}: set either {name} or {name}_FILE, not both")
        return ""
    if not path:
        return inline
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO nobody writes to would hang every command
            problems.append(f"{name}: {name}_FILE {path} is not a regular file")
            return ""
        with open(Path(path), "rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(f"{name}: cannot read {name}_FILE {path}: {exc.strerror or type(exc).__name__}")
        return ""
    if len(raw) > MAX_SECRET_FILE_BYTES:
        problems.append(f"{name}: {name}_FILE {path} is larger than 1 MiB")
        return ""
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        problems.append(f"{name}: {name}_FILE {path} is not UTF-8 text")
        return ""
