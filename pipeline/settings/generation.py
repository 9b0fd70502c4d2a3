"""Options → ``GenerationSettings``: the generators' option checks, as one-line user errors.

The generators (synthesis, evolution, personas, teachings, the round-trip check) share one
``GenerationSettings``; their own parsers (``--depth_techniques``, ``--personas_file``,
``--teachings``) are pure functions in ``transforms`` that raise ``ValueError`` or
``OSError``, named here with the option that gave the value.
"""

from __future__ import annotations

import argparse
from typing import Optional

from pipeline.settings.llm import check_model, consistency_llm_settings, model_settings
from transforms.kit.catalog import targets as database_targets
from transforms.core.errors import UserError
from transforms.generate.evolve import parse_techniques
from transforms.generate.generation import GenerationSettings
from transforms.generate.personas import load_personas_file
from transforms.core.vocab import split_patterns
from transforms.generate.teachings import load_teachings_file


def generation_settings(values: argparse.Namespace, *, database: Optional[str],
                        dialect: Optional[str]) -> Optional[GenerationSettings]:
    """``GenerationSettings`` from the parsed options, or None when no generator is asked for.

    ``database`` is the ``--database`` spec when queries are executed (``--validate
    execute``), else None. Raises ``UserError``.
    """
    wanted = {
        "--synthesize_from_schema": values.synthesize_from_schema,
        "--breadth": values.breadth,
        "--depth": values.depth,
        "--consistency": values.consistency,
        "--personas": values.personas,
        "--personas_file": values.personas_file,
    }
    asked = [flag for flag, value in wanted.items() if value]
    if not asked:
        if values.teachings:
            raise UserError("--teachings feeds the generators' prompts: add --synthesize_from_schema, --depth, "
                            "--breadth or --consistency")
        return None
    if values.personas and values.personas_file:
        raise UserError("give --personas N (generated) or --personas_file (yours), not both")
    if database is None:
        raise UserError(f"{asked[0]} executes every new SQL: give --database (and do not set --validate parse|none)")
    llm = model_settings(values)
    consistency_llm = consistency_llm_settings(values, llm) if values.consistency else None
    model_flags = [flag for flag in asked if flag != "--personas_file" and flag != "--consistency"]
    if llm.backend == "rules" and model_flags:
        raise UserError(f"{model_flags[0]} needs a model that writes questions and SQL: add --llm gemini|openai")
    if llm.backend != "rules":
        check_model("--llm", llm)
    if consistency_llm is not None:
        if consistency_llm.backend == "rules":
            raise UserError("--consistency needs a model that writes SQL: add --consistency_llm gemini|openai "
                            "(or --llm gemini|openai)")
        check_model("--consistency_llm", consistency_llm, project_flag="--llm_project")
    if values.breadth and values.dedup in ("sql-only", "template"):
        raise UserError(f"--breadth writes several questions for one SQL, which --dedup {values.dedup} would merge "
                        "back into one: use --dedup exact (near-duplicate questions are merged by --near_dup_threshold)")
    targets = tuple(database_targets(database))
    if values.synthesize_from_schema and not targets:
        raise UserError("--synthesize_from_schema needs databases named by --database (a URL or db_id=URL pairs); "
                        "a {db_id} template names none")
    try:
        techniques = parse_techniques(values.depth_techniques)
    except ValueError as error:
        raise UserError(f"--depth_techniques: {error}") from None
    personas_given: tuple = ()
    if values.personas_file:
        try:
            personas_given = tuple(load_personas_file(values.personas_file))
        except (OSError, ValueError) as error:
            raise UserError(f"--personas_file {values.personas_file}: {error}") from None
    teachings_given = None
    if values.teachings:
        try:
            teachings_given = tuple(load_teachings_file(values.teachings))
        except (OSError, ValueError) as error:
            raise UserError(f"--teachings {values.teachings}: {error}") from None
    return GenerationSettings(
        llm=llm,
        database=database,
        database_settings={"timeout_s": values.timeout_s, "max_rows": values.max_rows,
                           "password_env": values.database_password_env},
        schema_patterns=tuple(split_patterns(values.schema)),
        schema_dialect=dialect,
        output=values.output,
        personas=values.personas or 0,
        personas_given=personas_given,
        teachings_given=teachings_given,
        synthesize=values.synthesize_from_schema or 0,
        max_repairs=values.max_repairs,
        breadth=values.breadth or 0,
        depth=values.depth or 0,
        depth_techniques=techniques,
        consistency=bool(values.consistency),
        consistency_llm=consistency_llm,
        targets=targets,
    )
