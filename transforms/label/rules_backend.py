"""``--llm rules``: the offline, deterministic question writer behind the model contract.

It reads no prose: it takes the request's ``inputs['sql']`` (normalized SQL) and
``inputs['dialect']``, renders a question with ``transforms.sql.question_rules.describe_sql``
and answers in the same JSON shape a model would (``{"question": ...}``), so the
question stage, the cache and the tests treat it exactly like a model. It costs no
tokens and answers only prompts whose reply schema it knows.

It lives with the transforms, not in ``adapters/llm``: it calls no service, it is the
question rules behind the model contract, and adapters import nothing from ``transforms``.
So ``adapters.llm.open_backend`` does not know the name ``rules``: the question stage
(``transforms.label.questions.WriteQuestions``) hands this class to its ``LlmModelHandler`` as the
backend factory when ``settings.llm.backend`` is ``"rules"``.
"""

from __future__ import annotations

import json

from adapters.llm import LlmBackend, LlmError, LlmReply, LlmRequest

#: Reply schemas this backend can answer.
KNOWN_SCHEMAS = ("question",)


class RulesBackend(LlmBackend):
    """Questions from the SQL alone, by rules; identical for every sample and every run."""

    name = "rules"

    def complete(self, request: LlmRequest) -> LlmReply:
        if request.schema_name not in KNOWN_SCHEMAS:
            raise LlmError(f"the rules writer cannot answer {request.schema_name!r} prompts; use a model (--llm)",
                           retryable=False)
        sql = request.inputs.get("sql")
        if not sql:
            raise LlmError("the rules writer needs inputs['sql']", retryable=False)
        from transforms.sql import trees
        from transforms.sql.question_rules import describe_sql

        try:
            tree = trees.tree_for(sql, request.inputs.get("dialect") or None)
        except Exception as error:  # noqa: BLE001 - a parse failure is this request's failure
            message = f"cannot parse the SQL: {type(error).__name__}: {str(error)[:200]}"
            raise LlmError(message, retryable=False) from None
        return LlmReply(text=json.dumps({"question": describe_sql(tree)}, ensure_ascii=False))
