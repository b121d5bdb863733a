"""The deployment's env file (deploy/.env): settings for host commands and the containers alike.

Host commands read it under the process environment (a variable set in the shell wins), and
`cals setup-project` writes back the values CVAT now depends on (project id, webhook secret), so
that docker compose hands the trainer the same secret CVAT signs with.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from cals.errors import CalsError


def read(path: str | os.PathLike) -> dict[str, str]:
    """KEY=value pairs of an existing env file (comments and blank values dropped)."""
    from dotenv import dotenv_values

    path = Path(path)
    if not path.is_file():
        raise CalsError(f"env file {path} not found: copy deploy/.env.example to it and fill in CVAT's "
                        "address and credentials")
    return {k: v for k, v in dotenv_values(path).items() if v not in (None, "")}


def merged(path: str | os.PathLike | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The env file's values, overridden by the process environment."""
    environ = os.environ if environ is None else environ
    values = read(path) if path else {}
    values.update({k: v for k, v in environ.items() if v != ""})
    return values


def store(path: str | os.PathLike, key: str, value: str) -> bool:
    """Set `key` in the file (in place, keeping comments); False when it already had that value."""
    from dotenv import set_key

    if read(path).get(key) == value:
        return False
    set_key(str(path), key, value, quote_mode="never")
    return True


def main(argv: list[str] | None = None) -> int:
    """`python -m cals.env_file FILE CMD [ARGS...]`: run CMD with FILE's settings under the environment."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m cals.env_file ENV_FILE COMMAND [ARGS...]", file=sys.stderr)
        return 2
    path, command = argv[0], argv[1:]
    env = merged(path) if Path(path).is_file() else dict(os.environ)
    os.execvpe(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
