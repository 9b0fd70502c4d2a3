"""``--sft_target``: what an SFT completion holds — the SQL, or the ``--cot`` reasoning then the SQL fenced.

Pure text functions for ``transforms.publish.exports`` (which renders every training example): a
pair kept by ``transforms.publish.cot`` carries ``reasoning`` (the shortest trace whose SQL gave the
gold's result) and ``extra["cot_sql"]`` (that trace's own SQL); with ``--sft_target
reasoning`` its completion is the trace, a blank line, then the query in a ```` ```sql ````
block. The query is the trace's own (the one its steps describe, and it gives the gold's
result), else the pair's. The system message then asks for steps and the fenced query, and
the prompt of the prompt/completion format ends in ``### Answer`` instead of ``### SQL``.
"""

from __future__ import annotations

from transforms.core.record import Record

#: ``--sft_target`` values.
SFT_TARGETS = ("sql", "reasoning")
#: What the SQL target's system message asks for, and what the reasoning target asks instead.
SQL_ONLY = "Reply with one SQL query only."
STEPS_THEN_SQL = "Think step by step, then give the query in a ```sql block."


def reasoning_completion(reasoning: str, sql: str) -> str:
    """The trace, then the query in a fenced block.

    >>> print(reasoning_completion("Count the artists.", "SELECT COUNT(*) FROM artist"))
    Count the artists.
    <BLANKLINE>
    ```sql
    SELECT COUNT(*) FROM artist
    ```
    """
    return f"{reasoning.strip()}\n\n```sql\n{sql}\n```"


def reasoning_fields(system: str, prompt: str, sql: str, record: Record) -> dict[str, str]:
    """The ``system``, ``prompt`` and ``completion`` of a training example answering with ``record``'s reasoning.

    ``system``, ``prompt`` and ``sql`` are the SQL target's (``sql``: the pair's query, whitespace
    normalized); ``extra["cot_sql"]`` (written normalized by ``transforms.publish.cot``) replaces it.

    >>> record = Record("r1", "How many artists?", "SELECT COUNT(*) FROM artist", reasoning="Count them.",
    ...                 extra={"cot_sql": "SELECT COUNT(1) FROM artist"})
    >>> fields = reasoning_fields("You write SQL. Reply with one SQL query only.", "### Question\\nQ?\\n\\n### SQL\\n",
    ...                           "SELECT COUNT(*) FROM artist", record)
    >>> fields["system"], fields["prompt"][-11:], fields["completion"].splitlines()[-2]
    ('You write SQL. Think step by step, then give the query in a ```sql block.', '### Answer\\n', 'SELECT COUNT(1) FROM artist')
    """
    sql = record.extra.get("cot_sql") or sql
    if prompt.endswith("### SQL\n"):
        prompt = prompt[: -len("### SQL\n")] + "### Answer\n"
    return {"system": system.replace(SQL_ONLY, STEPS_THEN_SQL, 1), "prompt": prompt,
            "completion": reasoning_completion(record.reasoning or "", sql)}
