"""Flex Template entry point: the file ``FLEX_TEMPLATE_PYTHON_PY_FILE`` names.

Dataflow's Python template launcher runs ``python main.py --name=value ...`` with the
template parameters and the job's Beam options (project, region, staging and temp
locations, the template location the job description must be written to). This
file hands them to ``sqlpairs run`` unchanged, with one safeguard: without an
explicit ``--runner`` the job is built for ``DataflowRunner`` (``sqlpairs run`` alone
would run it on the in-process runner — on the launcher VM).

``sqlpairs run`` returns as soon as ``run()`` has submitted the job on a Dataflow
runner (it waits only when ``SQLPAIRS_WAIT=true``): a Flex Template launcher must
exit after submitting, or the launch never completes.

Secrets named in ``SQLPAIRS_SECRETS`` are read from Secret Manager before anything
else (see ``secrets_env.py``), because ``sqlpairs run`` checks at launch that the
variables named by ``--database_password_env`` / ``--llm_api_key_env`` are set and
that the database answers.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import secrets_env  # noqa: E402 - next to this file, found through the line above


def launcher_argv(argv: Sequence[str]) -> list[str]:
    """The ``sqlpairs`` command line for the launcher's arguments.

    >>> launcher_argv(["--output=gs://b/out"])
    ['run', '--output=gs://b/out', '--runner=DataflowRunner']
    >>> launcher_argv(["--runner", "DirectRunner"])
    ['run', '--runner', 'DirectRunner']
    """
    args = list(argv)
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in args):
        args.append("--runner=DataflowRunner")
    return ["run", *args]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Load secrets, build the job and submit it; returns ``sqlpairs``' exit status."""
    try:
        secrets_env.load()
    except secrets_env.SecretsError as error:
        print(f"sqlpairs: error: {error}", file=sys.stderr)
        return 2
    from pipeline.main import main as sqlpairs_main

    return sqlpairs_main(launcher_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
