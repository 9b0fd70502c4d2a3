"""``--prompt_schema`` → ``PromptSchemaSettings``, put into the training settings' schema source.

The schema a training prompt shows is chosen where prompts are rendered (the exports'
``SchemaLookup``, also used for the DPO prompts), so the setting rides on ``SchemaSource``:
the exports and the preference sampler then show the same schema for a pair.
"""

from __future__ import annotations

from typing import Any, Optional

from transforms.core.errors import UserError
from transforms.publish.exports import EXAMPLE_FORMATS
from transforms.publish.schema_prompt import LOOKUP_MAX_ROWS, PROMPT_SCHEMAS, REFERENCED, PromptSchemaSettings
from transforms.publish.training import TrainingSettings


def prompt_schema_settings(values: Any) -> PromptSchemaSettings:
    """``--prompt_schema`` with ``--seed`` (the noisy mode's choices are seeded per pair).

    >>> from types import SimpleNamespace
    >>> prompt_schema_settings(SimpleNamespace(prompt_schema="noisy", seed=7)).seed
    7
    """
    mode = getattr(values, "prompt_schema", None) or REFERENCED
    if mode not in PROMPT_SCHEMAS:
        raise UserError(f"--prompt_schema {mode!r}: expected {', '.join(PROMPT_SCHEMAS)}")
    return PromptSchemaSettings(mode=mode, seed=int(getattr(values, "seed", 0) or 0))


def with_prompt_schema(training: Optional[TrainingSettings], values: Any) -> Optional[TrainingSettings]:
    """``training`` whose exports (and DPO prompts) render the schema as ``--prompt_schema`` says.

    ``referenced`` (the default) leaves ``training`` as it is. The other modes need a format
    that shows a schema (``sft-chat``, ``prompt-completion``, ``prompt-completion-chat``,
    ``dpo-chat``) or ``--preference``; their schema lookup may read a list of up to 500 tables
    and a bounded value scan, so its executors may return ``LOOKUP_MAX_ROWS`` rows.
    """
    settings = prompt_schema_settings(values)
    if settings.mode == REFERENCED:
        return training
    shows_schema = training is not None and (
        training.preference is not None or any(f in (*EXAMPLE_FORMATS, "dpo-chat") for f in training.exports.formats))
    if not shows_schema:
        raise UserError(f"--prompt_schema {settings.mode} shapes the schema of exported prompts: give --format "
                        "sft-chat, prompt-completion, prompt-completion-chat or dpo-chat (or --preference)")
    schema = training.exports.schema
    database_settings = dict(schema.database_settings)
    database_settings["max_rows"] = max(int(database_settings.get("max_rows") or 0), LOOKUP_MAX_ROWS)
    schema = schema._replace(prompt=settings, database_settings=database_settings)
    preference = training.preference
    if preference is not None:
        preference = preference._replace(schema=schema)
    return training._replace(exports=training.exports._replace(schema=schema), preference=preference)
