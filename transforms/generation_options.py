"""Options -> ``GenerationSettings``: the generators' option checks, as one-line user errors.

Split from ``transforms.generation`` because it needs the generators' own parsers
(``--depth_techniques``, ``--personas_file``, ``--teachings``), while the generators import
the settings and helpers of ``transforms.generation``: kept in one module, they made an
import cycle. This module sits above both; nothing in ``transforms`` imports it.
"""

from __future__ import annotations

from typing import Any, Optional

from adapters.llm import LlmSettings
from transforms.catalog import targets as database_targets
from transforms.core.errors import UserError
from transforms.evolve import parse_techniques
from transforms.generation import GenerationSettings
from transforms.llm_options import check_model, model_settings
from transforms.personas import load_personas_file
from transforms.read import split_patterns
from transforms.teachings import load_teachings_file


def consistency_llm_settings(values: Any, llm: LlmSettings) -> LlmSettings:
    """The round-trip model: ``--consistency_llm*`` where given, else the ``--llm*`` settings; temperature 0.

    A different backend does not inherit ``--llm_model``, ``--llm_endpoint`` or
    ``--llm_api_key_env`` (they belong to the other provider).
    """
    backend = values.consistency_llm or llm.backend
    same = backend == llm.backend
    return llm._replace(
        backend=backend,
        model=values.consistency_llm_model or (llm.model if same else None),
        endpoint=values.consistency_llm_endpoint or (llm.endpoint if same else None),
        api_key_env=values.consistency_llm_api_key_env or (llm.api_key_env if same else None),
        temperature=0.0,
    )


def generation_settings(values: Any, *, database: Optional[str], dialect: Optional[str]) -> Optional[GenerationSettings]:
    """``GenerationSettings`` from the parsed options, or None when no generator is asked for.

    ``database`` is the ``--database`` spec when queries are executed (``--validate
    execute``), else None. Raises ``transforms.core.errors.UserError``.
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
