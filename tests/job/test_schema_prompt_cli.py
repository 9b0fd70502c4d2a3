"""``--prompt_schema`` end to end: the exported prompts of a run on Chinook (SQLite and PostgreSQL),
loaded back as users load them (Hugging Face ``datasets``, pandas), seeded, and refused without a
format that shows a schema."""

from __future__ import annotations

import json
import os
import pathlib
import re

os.environ["HF_DATASETS_OFFLINE"] = "1"  # never download anything
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402 - after the offline switches
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pipeline.main import main  # noqa: E402
from tests.fakes import db_fixtures as fx  # noqa: E402
from tests.conftest import REPO  # noqa: E402

EXAMPLES = REPO / "examples"
SQLITE_CHINOOK = f"sqlite:///{EXAMPLES / 'chinook.sqlite'}"
SQLITE_TABLES = 11
PG_PAIRS = [
    {"question": "List the titles of albums by AC/DC.",
     "sql": "SELECT al.title FROM album al JOIN artist a ON a.artist_id = al.artist_id WHERE a.name = 'AC/DC'"},
    {"question": "How many tracks are in the genre Jazz?",
     "sql": "SELECT COUNT(*) FROM track t JOIN genre g ON g.genre_id = t.genre_id WHERE g.name = 'Jazz'"},
    {"question": "How many customers live in Brazil?", "sql": "SELECT COUNT(*) FROM customer WHERE country = 'Brazil'"},
]

datasets.disable_progress_bars()


def _run(out: pathlib.Path, *args: str) -> pathlib.Path:
    status = main(["run", *args, "--output", str(out), "--timeout_s", "5", "--html_report=false"])
    assert status == 0
    return pathlib.Path(f"{out}-dataset")


def _sqlite_run(out: pathlib.Path, mode: str, seed: int = 0) -> pathlib.Path:
    return _run(out, "--seed_pairs", str(EXAMPLES / "seed_pairs.jsonl"), "--database", SQLITE_CHINOOK,
                "--format", "sft-chat,prompt-completion,parquet", "--num_shards", "2",
                "--prompt_schema", mode, "--seed", str(seed))


def _jsonl(dataset: pathlib.Path, name: str) -> list[dict]:
    files = sorted(dataset.glob(f"jsonl/{name}/train-*.jsonl"))
    assert files
    return [json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines()]


def _tables_in(schema_text: str) -> list[str]:
    return re.findall(r"^CREATE TABLE (\S+) \(", schema_text, re.M)


def _files_bytes(dataset: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(dataset)): p.read_bytes() for p in sorted(dataset.rglob("train-*")) if p.is_file()}


@pytest.fixture(scope="module")
def noisy_runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("noisy")
    return {name: _sqlite_run(directory / name, "noisy", seed) for name, seed in
            (("a", 0), ("again", 0), ("other", 1))}


def test_noisy_prompts_load_with_datasets_and_pandas(noisy_runs, tmp_path):
    dataset = noisy_runs["a"]
    parquet = sorted(str(p) for p in dataset.glob("parquet/prompt-completion/train-*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=parquet, split="train", cache_dir=str(tmp_path))
    frame = pd.concat([pd.read_json(p, lines=True) for p in sorted(dataset.glob("jsonl/sft-chat/train-*.jsonl"))])
    assert len(loaded) == len(frame) > 0
    by_id = {row["id"]: row for row in _jsonl(dataset, "prompt-completion")}
    assert sorted(loaded["id"]) == sorted(by_id)
    for row in loaded:
        assert row["prompt"] == by_id[row["id"]]["prompt"]
    pairs = {json.loads(line)["id"]: json.loads(line) for path in sorted(dataset.parent.glob("a-0*-of-*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines()}
    for row in by_id.values():
        shown = {t.lower() for t in _tables_in(row["prompt"])}
        used = {t.lower() for t in pairs[row["id"]]["tables"]}
        assert used < shown and len(shown) <= len(used) + 4  # the referenced tables plus 1-4 distractors
    system = {row["id"]: row["messages"][0]["content"] for _, row in frame.iterrows()}
    assert all(text.endswith(_schema_of(by_id[i]["prompt"])) for i, text in system.items())


def _schema_of(prompt: str) -> str:
    return prompt.split("### Database schema\n", 1)[1].split("\n\n### Question", 1)[0]


def test_noisy_prompts_show_values_matching_the_question(noisy_runs):
    rows = {row["prompt"].split("### Question\n")[1]: row for row in _jsonl(noisy_runs["a"], "prompt-completion")}
    prompt = rows["List the titles of albums by AC/DC.\n\n### SQL\n"]["prompt"]
    assert re.search(r"^  Name NVARCHAR\(120\).* -- example values: 'AC/DC'", prompt, re.M), prompt


def test_noisy_prompts_are_seeded(noisy_runs):
    first, again, other = (_files_bytes(noisy_runs[name]) for name in ("a", "again", "other"))
    assert first == again
    assert first.keys() == other.keys() and first != other


def test_full_shows_every_table_and_referenced_is_unchanged(tmp_path):
    full = _sqlite_run(tmp_path / "full", "full")
    for row in _jsonl(full, "prompt-completion"):
        assert len(_tables_in(row["prompt"])) == SQLITE_TABLES
    default = _run(tmp_path / "default", "--seed_pairs", str(EXAMPLES / "seed_pairs.jsonl"), "--database",
                   SQLITE_CHINOOK, "--format", "sft-chat,prompt-completion,parquet", "--num_shards", "2")
    referenced = _sqlite_run(tmp_path / "referenced", "referenced", seed=5)
    assert _files_bytes(default) == _files_bytes(referenced)  # the default: the prompts as before, any seed


def test_prompt_schema_needs_a_format_that_shows_a_schema(tmp_path, capsys):
    status = main(["run", "--seed_pairs", str(EXAMPLES / "seed_pairs.jsonl"), "--database", SQLITE_CHINOOK,
                   "--prompt_schema", "noisy", "--output", str(tmp_path / "o")])
    assert status == 2
    assert "--prompt_schema noisy" in capsys.readouterr().err


# --- PostgreSQL Chinook -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chinook_url() -> str:
    return fx.load_chinook()


def _pg_run(tmp_path: pathlib.Path, url: str, mode: str) -> dict[str, str]:
    seeds = tmp_path / f"seeds-{mode}.jsonl"
    seeds.write_text("".join(json.dumps(pair) + "\n" for pair in PG_PAIRS), encoding="utf-8")
    dataset = _run(tmp_path / mode, "--seed_pairs", str(seeds), "--database", url, "--format", "prompt-completion",
                   "--prompt_schema", mode)
    return {row["prompt"].split("### Question\n")[1].split("\n")[0]: row["prompt"]
            for row in _jsonl(dataset, "prompt-completion")}


def test_full_on_postgres_lists_the_whole_database(tmp_path, chinook_url):
    prompts = _pg_run(tmp_path, chinook_url, "full")
    assert len(prompts) == len(PG_PAIRS)
    for prompt in prompts.values():
        assert sorted(_tables_in(prompt)) == ["album", "artist", "customer", "employee", "genre", "invoice",
                                              "invoice_line", "media_type", "playlist", "playlist_track", "track"]


def test_noisy_on_postgres_shows_distractors_and_values(tmp_path, chinook_url):
    prompts = _pg_run(tmp_path, chinook_url, "noisy")
    assert re.search(r"^  name character varying.* -- example values: 'AC/DC'",
                     prompts["List the titles of albums by AC/DC."], re.M)
    assert "example values: 'Jazz'" in prompts["How many tracks are in the genre Jazz?"]
    assert "example values: 'Brazil'" in prompts["How many customers live in Brazil?"]
    for question, prompt in prompts.items():
        tables = _tables_in(prompt)
        assert 1 <= len(tables) - (2 if "JOIN" in next(p["sql"] for p in PG_PAIRS if p["question"] == question)
                                   else 1) <= 4
