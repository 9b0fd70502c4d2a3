"""``--decontaminate`` / ``--decontaminate_threshold`` → ``DecontaminateSettings``, checked before the run.

Every benchmark file is matched and read here, once, in the launcher: a pattern that
matches nothing, a file of an unknown format or one that cannot be parsed is a one-line
``UserError`` naming the file, instead of a worker's traceback after the job ran. The
items themselves are not kept: the pipeline reads the files again on a worker (a list of
ten thousand benchmark items in the job's graph would be pickled into every DoFn).
"""

from __future__ import annotations

import argparse
import os
from typing import Optional

from transforms.sql.benchmark_index import BenchmarkFormatError, read_benchmark
from transforms.core.errors import UserError
from transforms.select.decontaminate import DecontaminateSettings
from transforms.kit.inputs import match_pattern, open_input
from transforms.core.vocab import split_patterns


def decontaminate_settings(values: argparse.Namespace, *, target_dialect: str,
                           source_dialect: Optional[str]) -> Optional[DecontaminateSettings]:
    """The settings of the decontamination stage, or None without ``--decontaminate``; raises ``UserError``.

    ``source_dialect`` (else ``target_dialect``) is the dialect of JSONL pairs that name none.
    """
    patterns = tuple(split_patterns(getattr(values, "decontaminate", None)))
    if not patterns:
        return None
    default_dialect = source_dialect or target_dialect
    for pattern in patterns:
        for path in _files_of(pattern):
            try:
                with open_input(path) as stream:
                    read_benchmark(stream.read(), path, default_dialect)
            except BenchmarkFormatError as error:
                raise UserError(f"--decontaminate {path}: {error}") from None
            except (OSError, EOFError, ValueError) as error:  # unreadable, or a broken .gz/.bz2
                raise UserError(f"--decontaminate {path}: cannot read it: {error}") from None
    return DecontaminateSettings(patterns=patterns, target_dialect=target_dialect, default_dialect=default_dialect,
                                 threshold=values.decontaminate_threshold)


def _files_of(pattern: str) -> list[str]:
    """The files ``pattern`` matches; a pattern matching none, or reaching something unreadable, is an error."""
    if "://" not in pattern and os.path.isdir(pattern):
        raise UserError(f"--decontaminate {pattern!r} is a directory: give file patterns such as "
                        f"{os.path.join(pattern, '*.json')!r}")
    try:
        matched = match_pattern(pattern)
    except Exception as error:  # noqa: BLE001 - a filesystem error is the user's to fix
        raise UserError(f"--decontaminate {pattern!r}: {error}") from None
    if matched.problems:
        problem = matched.problems[0]
        raise UserError(f"--decontaminate {problem.path}: {problem.detail}")
    if not matched.files:
        raise UserError(f"--decontaminate {pattern!r} matches no file")
    return [metadata.path for metadata in matched.files]
