"""A canned "model" for the synthesis tests: realistic replies to every generation prompt, for Chinook.

``CannedModel`` answers ``tests/fakes/llm_fake_server.FakeLlmServer`` calls by prompt kind, the
way a decent model would, flaws included, so every guardrail and repair path is
exercised by replies that look like real ones:

* personas and teachings: plausible JSON (plus one persona with an unknown style);
* synthesis: per curriculum concept, pairs for the Chinook SQLite database — most run,
  some use MySQL's ``YEAR()`` or a column that does not exist (the repair loop fixes
  them), one tacks ``DROP TABLE`` on (refused, repaired), one puts SQL in the question,
  one names an invented column (guardrails);
* repair: the fixed query for each broken one it wrote;
* depth: one behaviour per technique — a COUNT over the original (ok), a filter on a
  missing column (repaired), prose instead of JSON (``invalid_reply``), the original SQL
  unchanged (``not_evolved``), an invented column name, a row-numbering window, a CTE;
* breadth: a faithful paraphrase, the original repeated, a near-copy of the first, one
  that drops the numbers;
* round-trip: the SQL it "knows" for a question (what it wrote, or what the test taught
  it), a different query for some, a broken one for one — else a plausible wrong guess.

Replies depend only on the prompt and on what the model wrote before (a question is
known once its pair was written), which the pipeline's data dependencies order.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Mapping, Optional

from tests.fakes.llm_fake_server import Action, Call

# concept -> [(question, sql as first written, fixed sql or None)]
SYNTH: dict[str, list[tuple[str, str, Optional[str]]]] = {
    "filtering": [
        ("Which customers from Brazil have a company listed?",
         "SELECT FirstName, LastName FROM Customer WHERE Country = 'Brazil' AND Company IS NOT NULL", None),
        ("Which tracks cost more than 0.99 and last over five minutes?",
         "SELECT Name FROM Track WHERE UnitPrice > 0.99 AND Milliseconds > 300000", None),
    ],
    "aggregation": [
        ("How many invoices were billed to Germany?", "SELECT COUNT(*) FROM Invoice WHERE BillingCountry = 'Germany'",
         None),
        ("What is the average length of a track in milliseconds?", "SELECT AVG(Milliseconds) FROM Track", None),
    ],
    "ordering and limits": [
        ("What are the five longest tracks?", "SELECT Name FROM Track ORDER BY Milliseconds DESC LIMIT 5", None),
    ],
    "grouping": [
        ("Which genres have more than 100 tracks?",
         "SELECT g.Name FROM Genre g JOIN Track t ON t.GenreId = g.GenreId GROUP BY g.Name HAVING COUNT(*) > 100",
         None),
    ],
    "joins": [
        ("List every album title with the name of its artist.",
         "SELECT a.Title, ar.ArtistName FROM Album a JOIN Artist ar ON a.ArtistId = ar.ArtistId",
         "SELECT a.Title, ar.Name FROM Album a JOIN Artist ar ON a.ArtistId = ar.ArtistId"),
    ],
    "subqueries": [
        ("Which artists have no albums?", "SELECT Name FROM Artist WHERE ArtistId NOT IN (SELECT ArtistId FROM Album)",
         None),
    ],
    "date functions": [
        ("How many invoices were issued in 2010?", "SELECT COUNT(*) FROM Invoice WHERE YEAR(InvoiceDate) = 2010",
         "SELECT COUNT(*) FROM Invoice WHERE strftime('%Y', InvoiceDate) = '2010'"),
    ],
    "string functions": [
        ("Which customers use a gmail address?",
         "SELECT FirstName, LastName FROM Customer WHERE Email LIKE '%@gmail.com'", None),
    ],
    "NULL handling": [
        ("SELECT FirstName FROM Customer WHERE Company IS NULL",
         "SELECT FirstName FROM Customer WHERE Company IS NULL", None),
        ("Which customers have no state on record?", "SELECT FirstName, LastName FROM Customer WHERE State IS NULL",
         None),
    ],
    "conditional logic": [
        ("How many invoices are large (over 10 dollars) and how many are small?",
         "SELECT CASE WHEN Total > 10 THEN 'large' ELSE 'small' END AS size, COUNT(*) FROM Invoice GROUP BY size",
         None),
    ],
    "ratios": [
        ("What is the customer_churn_rate for each country?",
         "SELECT Country, COUNT(*) FROM Customer GROUP BY Country", None),
        ("What percentage of all tracks belong to the Rock genre?",
         "SELECT 100.0 * SUM(CASE WHEN g.Name = 'Rock' THEN 1 ELSE 0 END) / COUNT(*) FROM Track t "
         "JOIN Genre g ON t.GenreId = g.GenreId", None),
    ],
    "CTEs": [
        ("Which customers spent more than the average customer?",
         "WITH spend AS (SELECT CustomerId, SUM(Total) AS spent FROM Invoice GROUP BY CustomerId) "
         "SELECT c.FirstName, c.LastName FROM spend s JOIN Customer c ON c.CustomerId = s.CustomerId "
         "WHERE s.spent > (SELECT AVG(spent) FROM spend)", None),
    ],
    "window functions": [
        ("Rank the tracks of each album from longest to shortest.",
         "SELECT AlbumId, Name, RANK() OVER (PARTITION BY AlbumId ORDER BY Milliseconds DESC) AS rnk FROM Track",
         None),
    ],
    "set operations": [
        ("List every genre name and media type name together.",
         "SELECT Name FROM Genre; DROP TABLE Genre", "SELECT Name FROM MediaType UNION SELECT Name FROM Genre"),
    ],
}

PERSONAS = [
    {"role": "Sales analyst", "perspective": "Tracks revenue by country and customer to plan promotions.",
     "styles": ["formal", "concise"]},
    {"role": "Music curator", "perspective": "Explores artists, albums and genres to build playlists.",
     "styles": ["colloquial", "interrogative"]},
    {"role": "Support manager", "perspective": "Checks which employees look after which customers.",
     "styles": ["imperative"]},
]
TEACHINGS = {
    "glossary": [
        {"term": "revenue", "meaning": "SUM(Invoice.Total), or SUM(InvoiceLine.UnitPrice * InvoiceLine.Quantity)"},
        {"term": "song", "meaning": "a row of Track"},
    ],
    "hints": ["Track.Milliseconds is a track's length; divide by 60000 for minutes."],
    "guardrails": ["SQLite has no YEAR(): use strftime('%Y', InvoiceDate)."],
}


def _after(text: str, start: str, end: str) -> Optional[str]:
    match = re.search(re.escape(start) + r"(.*?)" + re.escape(end), text, re.DOTALL)
    return match.group(1).strip() if match else None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


class CannedModel:
    """``answer(call) -> Action`` for ``FakeLlmServer``; ``known`` maps questions to the SQL it believes."""

    def __init__(self, known: Optional[Mapping[str, str]] = None, wrong: Mapping[str, str] = {}):
        self.known: dict[str, str] = dict(known or {})
        self.wrong = dict(wrong)  # question -> the SQL the round-trip model writes instead
        self.fixes = {broken: fixed for pairs in SYNTH.values() for _, broken, fixed in pairs if fixed}
        self.lock = threading.Lock()
        self.kinds: dict[str, int] = {}

    def _learn(self, question: str, sql: str) -> None:
        with self.lock:
            self.known.setdefault(question, sql)

    def _reply(self, kind: str, value) -> Action:
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return Action(text=value if isinstance(value, str) else json.dumps(value))

    def __call__(self, call: Call) -> Action:
        prompt = call.prompt
        if "Your previous reply could not be used" in prompt:
            return self._reply("json_repair", "I am sorry, I cannot produce JSON for this.")
        if "different people who would ask questions" in prompt:
            count = int(re.search(r"Describe (\d+) different", prompt).group(1))
            return self._reply("personas", {"personas": PERSONAS[:count] + [
                {"role": "Poet", "perspective": "Wants rhymes.", "styles": ["lyrical"]}]})
        if "Write domain notes" in prompt:
            return self._reply("teachings", TEACHINGS)
        if "different question/SQL pairs for this" in prompt:
            return self._reply("synthesize", self._synthesize(prompt))
        if "but running it on the database failed" in prompt:
            broken = _after(prompt, "Query:\n", "\n\nWhat the database said:")
            fixed = self.fixes.get(broken) or broken.replace(" WHERE sub.NoSuchColumn IS NOT NULL", " LIMIT 3")
            question = _after(prompt, "Question: ", "\n\nQuery:")
            self._learn(question, fixed)
            return self._reply("repair", {"sql": fixed})
        if "into a harder pair" in prompt:
            return self._reply("depth", self._depth(prompt))
        if "Rewrite this question about" in prompt:
            return self._reply("breadth", self._breadth(prompt))
        if "query that answers this question on the database below" in prompt:
            return self._reply("consistency", self._blind(prompt))
        return self._reply("unknown", {"question": "What is this?"})

    def _synthesize(self, prompt: str) -> dict:
        count = int(re.search(r"Write (\d+) different", prompt).group(1))
        concept = re.search(r"exercises this SQL concept: (.+?), meaning", prompt).group(1)
        persona = re.search(r"asked by (.+?), in a ", prompt).group(1)
        level = re.search(r"difficulty: (.+?), meaning", prompt).group(1)
        canned = SYNTH[concept]
        offset = sum(map(ord, persona + level)) % len(canned)  # personas and levels lead with different pairs
        pairs = [canned[(offset + i) % len(canned)] for i in range(min(count, len(canned)))]
        for question, sql, fixed in pairs:
            self._learn(question, fixed or sql)
        return {"pairs": [{"question": q, "sql": s} for q, s, _ in pairs]}

    def _depth(self, prompt: str):
        question = _after(prompt, "Question: ", "\n\nSQL:\n")
        sql = _after(prompt, "\n\nSQL:\n", "\n\nTechnique: ")
        technique = re.search(r"Technique: ([a-z-]+)", prompt).group(1)
        stem = question.rstrip("?. ")
        if technique == "add-aggregation":
            new = (f"{stem} - how many such results are there in total?", f"SELECT COUNT(*) FROM ({sql}) AS sub")
        elif technique == "add-filter":
            new = (f"{stem}, keeping only the first three results?",
                   f"SELECT * FROM ({sql}) AS sub WHERE sub.NoSuchColumn IS NOT NULL")
        elif technique == "add-join":
            return f"Sure! Here is a harder version: {stem}, with each artist's name. SELECT ... JOIN Artist ..."
        elif technique == "hypothetical":
            new = (f"What if we asked again: {_lower_first(stem)}?", sql)
        elif technique == "add-reasoning":
            new = (f"{stem}, compared with the average_track_price?", sql.replace("SELECT", "SELECT 1 AS x,", 1))
        elif technique == "add-window":
            new = (f"{stem}, numbering each result in order?",
                   f"SELECT *, ROW_NUMBER() OVER () AS position FROM ({sql}) AS sub")
        else:  # add-cte
            new = (f"Working from an intermediate result: {_lower_first(stem)}?", f"WITH base AS ({sql}) SELECT * FROM base")
        if "NoSuchColumn" not in new[1]:
            self._learn(new[0], new[1])
        if technique == "add-window":  # a blind model would not number the rows: a realistic mismatch
            self.wrong.setdefault(new[0], sql)
        return {"question": new[0], "sql": new[1]}

    def _breadth(self, prompt: str) -> dict:
        count = int(re.search(r"in (\d+) different ways", prompt).group(1))
        question = _after(prompt, "Question: ", "\n\nSQL (for reference only):")
        sql = _after(prompt, "SQL (for reference only):\n", "\n\nWrite one rewrite per style")
        stem = question.rstrip("?. ")
        variants = [
            f"Could you tell me {_lower_first(stem)}?",
            question,
            f"Could you tell me {_lower_first(stem)} please?",
            re.sub(r"\d+(?:\.\d+)?", "several", question) if re.search(r"\d", question) else f"I'd like to know: {stem}.",
        ]
        start = sum(map(ord, question)) % len(variants)  # which flaws a parent's paraphrases have varies
        chosen = [variants[(start + i) % len(variants)] for i in range(count)]
        for variant in chosen:
            self._learn(variant, sql)
        return {"questions": chosen}

    def _blind(self, prompt: str) -> dict:
        question = _after(prompt, "Question: ", "\n\nWrite one read-only SELECT")
        with self.lock:
            sql = self.wrong.get(question) or self.known.get(question)
        return {"sql": sql or "SELECT COUNT(*) FROM Track"}


# ---------------------------------------------------------------------------------------------
# Test plumbing shared by the synthesis, evolution and consistency tests
# ---------------------------------------------------------------------------------------------

# collect(pipeline, **pcolls): run and read back what each PCollection held, through files (not a
# module-level list, which only fills when the runner runs DoFns in this process)
from tests.fakes.beam_collect import collect  # noqa: E402,F401 - re-exported for the synthesis, evolution, consistency tests


def chinook_settings(server_url: str, **overrides):
    """GenerationSettings for examples/chinook.sqlite and a model at ``server_url``."""
    from tests.conftest import REPO

    from adapters.llm import LlmSettings
    from transforms.generate.generation import GenerationSettings

    url = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
    llm = LlmSettings(backend="openai", endpoint=server_url, retries=1, backoff_s=0.01, backoff_max_s=0.05,
                      timeout_s=10, max_in_flight=8)
    values = dict(llm=llm, database=url, database_settings={"timeout_s": 5.0, "max_rows": 2000},
                  targets=(("", url),), max_repairs=1)
    values.update(overrides)
    return GenerationSettings(**values)
