"""Put Secret Manager secrets into environment variables, then run a command (the image's entrypoint).

The job never takes a secret as an option or template parameter: it takes the *name*
of an environment variable (``--database_password_env``, ``--llm_api_key_env``) and
reads it on the worker. Dataflow cannot set per-job environment variables in worker
containers, so this image fills them itself, at container start, from Secret
Manager::

    SQLPAIRS_SECRETS="DB_PASSWORD=projects/P/secrets/db-password/versions/latest,LLM_KEY=projects/P/secrets/llm/versions/3"

``SQLPAIRS_SECRETS`` holds only secret *resource names* (not secret themselves); set it
when the image is built (``--build-arg SQLPAIRS_SECRETS=...``). Each listed variable
that is not already set is read with Beam's ``GcpSecret`` using the container's
service account (which needs ``roles/secretmanager.secretAccessor`` on those
secrets). The Flex Template launcher calls ``load()`` in-process before it builds
the job; SDK worker containers run ``python secrets_env.py /opt/apache/beam/boot ...``,
which loads the variables and ``exec``\\s the Beam boot binary with its arguments.

Values are never printed or logged; an error names the variable and the secret
resource only.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable, MutableMapping, Optional, Sequence

#: Environment variable listing ``ENV_NAME=projects/.../secrets/.../versions/...`` pairs.
SPEC_VARIABLE = "SQLPAIRS_SECRETS"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION_NAME = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")


class SecretsError(RuntimeError):
    """A malformed ``SQLPAIRS_SECRETS`` or a secret that could not be read."""


def parse_spec(spec: Optional[str]) -> dict[str, str]:
    """``"A=projects/p/secrets/s/versions/1, B=..."`` → ``{"A": "projects/p/secrets/s/versions/1", ...}``.

    >>> parse_spec("DB_PASSWORD=projects/p/secrets/db/versions/latest")
    {'DB_PASSWORD': 'projects/p/secrets/db/versions/latest'}
    >>> parse_spec("") == {}
    True
    """
    pairs: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, version = (part.strip() for part in item.partition("="))
        # the text is not echoed: a value pasted here by mistake must not reach a log
        if not sep or not _ENV_NAME.match(name):
            raise SecretsError(f"{SPEC_VARIABLE}: entry {len(pairs) + 1} is not ENV_NAME=projects/P/secrets/S/versions/V")
        if not _VERSION_NAME.match(version):
            raise SecretsError(f"{SPEC_VARIABLE}: {name}: expected a secret version projects/P/secrets/S/versions/V")
        pairs[name] = version
    return pairs


def _read_secret(version_name: str) -> str:
    from apache_beam.utils.secret import GcpSecret

    return GcpSecret(version_name).get_secret_bytes().decode("utf-8")


def load(
    environ: MutableMapping[str, str] = os.environ,
    read: Callable[[str], str] = _read_secret,
) -> list[str]:
    """Fill every variable named in ``SQLPAIRS_SECRETS`` that is not set yet; returns their names."""
    loaded = []
    for name, version in parse_spec(environ.get(SPEC_VARIABLE)).items():
        if environ.get(name):
            continue  # set explicitly (e.g. a local run): that value wins
        try:
            environ[name] = read(version)
        except Exception as error:  # noqa: BLE001 - the cause goes into one clear line
            raise SecretsError(f"{name}: cannot read secret {version}: {type(error).__name__}") from None
        loaded.append(name)
    return loaded


def main(argv: Sequence[str]) -> int:
    """Load the secrets, then replace this process with ``argv`` (the real entrypoint)."""
    if not argv:
        print("usage: secrets_env.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        load()
    except SecretsError as error:
        print(f"sqlpairs: error: {error}", file=sys.stderr)
        return 2
    os.execvp(argv[0], list(argv))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
