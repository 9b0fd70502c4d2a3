"""Training exports: each format's shape, staged sets, Parquet round trips, byte-identical re-runs."""

from __future__ import annotations

import json
import pathlib

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from tests.conftest import REPO, make_pipeline

from pipeline.main import main
from transforms.core.record import Record
from transforms.publish.exports import (
    PAIR_FIELD_TYPES,
    SCHEMAS,
    ExportSettings,
    SchemaSource,
    WriteExports,
    normalize_whitespace,
    parquet_bytes,
)

DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"
SEEDS = [
    ("How many artists are there?", "SELECT COUNT(*) FROM Artist"),  # easy
    ("What are the names of all genres?", "SELECT   Name\n  FROM Genre"),  # easy
    ("List the titles of albums by AC/DC.",
     "SELECT al.Title FROM Album al JOIN Artist a ON a.ArtistId = al.ArtistId WHERE a.Name = 'AC/DC'"),  # medium
    ("Which five countries have the highest average invoice total?",
     "SELECT BillingCountry, AVG(Total) FROM Invoice GROUP BY BillingCountry ORDER BY AVG(Total) DESC LIMIT 5"),  # hard
    ("Which genres have more than ten tracks longer than five minutes, by count?",
     "SELECT g.Name, COUNT(*) FROM Track t JOIN Genre g ON g.GenreId = t.GenreId WHERE t.Milliseconds > 300000 "
     "GROUP BY g.Name HAVING COUNT(*) > 10 ORDER BY COUNT(*) DESC"),  # extra
]
LEVELS = ("easy", "medium", "hard", "extra")


def _seed_file(directory: pathlib.Path, seeds) -> pathlib.Path:
    path = directory / "seeds.jsonl"
    path.write_text("".join(json.dumps({"question": q, "sql": s}) + "\n" for q, s in seeds))
    return path


def _run(seed_file: pathlib.Path, output_dir: pathlib.Path, *extra: str) -> pathlib.Path:
    output = output_dir / "pairs"
    assert main(["run", "--seed_pairs", str(seed_file), "--database", DATABASE, "--output", str(output), *extra]) == 0
    return output_dir


EXPORT_OPTIONS = ("--format", "sft-chat,prompt-completion,parquet", "--stage_by", "difficulty", "--num_shards", "2",
                  "--sft_sample_rows", "2")


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    return _seed_file(tmp_path_factory.mktemp("seeds"), SEEDS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, seed_file):
    return _run(seed_file, tmp_path_factory.mktemp("first"), *EXPORT_OPTIONS)


def _jsonl(directory: pathlib.Path, set_name: str) -> list[dict]:
    rows = []
    for path in sorted((directory / "pairs-dataset" / "jsonl" / set_name).glob("train-?????-of-00002.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def _parquet(directory: pathlib.Path, set_name: str) -> list[dict]:
    rows = []
    for path in sorted((directory / "pairs-dataset" / "parquet" / set_name).glob("train-?????-of-00002.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_sft_chat_rows_hold_the_referenced_tables_ddl_the_question_and_the_sql(exported):
    rows = {row["messages"][1]["content"]: row for row in _jsonl(exported, "sft-chat")}
    assert len(rows) == len(SEEDS)
    albums = rows["List the titles of albums by AC/DC."]["messages"]
    assert [m["role"] for m in albums] == ["system", "user", "assistant"]
    system = albums[0]["content"]
    assert "CREATE TABLE album (" in system and "CREATE TABLE artist (" in system
    assert "CREATE TABLE track" not in system and "CREATE TABLE genre" not in system  # only what the SQL reads
    assert "-- sample rows of artist:" in system and "'AC/DC'" in system  # --sft_sample_rows 2
    assert albums[2]["content"] == ("SELECT al.title FROM album AS al JOIN artist AS a ON a.artistid = al.artistid "
                                    "WHERE a.name = 'AC/DC'")
    assert rows["What are the names of all genres?"]["messages"][2]["content"] == "SELECT name FROM genre"


def test_prompt_completion_keeps_the_sql_out_of_the_prompt(exported):
    rows = _jsonl(exported, "prompt-completion")
    assert len(rows) == len(SEEDS)
    for row in rows:
        assert set(row) == {"id", "prompt", "completion", "meta"}
        assert row["prompt"].endswith("### SQL\n") and "### Database schema\nCREATE TABLE" in row["prompt"]
        assert row["completion"] not in row["prompt"]
        assert row["completion"] == " ".join(row["completion"].split())


def test_stage_by_difficulty_splits_every_format_into_one_set_per_level(exported):
    for fmt_prefix in ("pairs", "sft-chat", "prompt-completion"):
        full = _jsonl(exported, fmt_prefix)
        staged = {level: _jsonl(exported, f"{fmt_prefix}-{level}") for level in LEVELS}
        assert {level: len(rows) for level, rows in staged.items()} == {"easy": 2, "medium": 1, "hard": 1, "extra": 1}
        assert sorted(r["id"] for rows in staged.values() for r in rows) == sorted(r["id"] for r in full)
        for level, rows in staged.items():
            difficulty = [r["difficulty"] if fmt_prefix == "pairs" else r["meta"]["difficulty"] for r in rows]
            assert set(difficulty) <= {level}


def test_parquet_copies_hold_the_same_rows_as_the_jsonl(exported):
    for fmt_prefix in ("sft-chat", "prompt-completion", "sft-chat-easy"):
        assert sorted(_parquet(exported, fmt_prefix), key=lambda r: r["id"]) == sorted(
            _jsonl(exported, fmt_prefix), key=lambda r: r["id"])
    pairs_jsonl = {r["id"]: r for r in _jsonl(exported, "pairs")}
    pairs_parquet = {r["id"]: r for r in _parquet(exported, "pairs")}
    assert set(pairs_parquet) == set(pairs_jsonl)
    for rid, row in pairs_parquet.items():
        row["extra"] = json.loads(row["extra"])  # JSON text in Parquet: a map has no datasets or pandas type
        assert row == pairs_jsonl[rid]


def test_the_training_report_counts_every_set(exported):
    report = json.loads((exported / "pairs-report.json").read_text())
    sets = report["exports"]["sets"]
    assert sets["sft-chat"] == sets["prompt-completion"] == len(SEEDS)
    assert sets["sft-chat-easy"] == 2 and sets["pairs-extra"] == 1


def test_a_rerun_writes_identical_bytes(exported, seed_file, tmp_path):
    again = _run(seed_file, tmp_path, *EXPORT_OPTIONS)

    def files(root: pathlib.Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".jsonl", ".parquet"))

    names = files(exported)
    assert names == files(again)
    # pairs + rejects (2 shards each), and in the dataset folder: 3 formats x 5 sets x 2 shards x 2 copies
    # and the rejects set (2 shards x 2 copies)
    assert len(names) == 2 * 2 + 3 * (1 + len(LEVELS)) * 2 * 2 + 2 * 2
    for name in names:
        assert (exported / name).read_bytes() == (again / name).read_bytes(), name


def _dpo_row(i: int, difficulty: str) -> dict:
    meta = {"record_id": f"r{i}", "db_id": None, "difficulty": difficulty, "exec_difficulty": None,
            "concepts": ["join"], "question": "Q?",
            "neg_kind": "wrong_result", "sample_index": i, "rejected_error": "", "chosen_source": "sample",
            "chosen_sample_index": 0, "weak_model": "openai:fake"}
    return {"id": f"d{i:02d}", "prompt": "P", "chosen": "SELECT 1", "rejected": f"SELECT {i}", "meta": meta}


def test_dpo_rows_get_parquet_copies_and_staged_sets(tmp_path):
    rows = [_dpo_row(i, LEVELS[i % 4]) for i in range(8)]
    output = str(tmp_path / "p")
    settings = ExportSettings(output, 1, ("pairs", "dpo"), parquet=True, stage_by="difficulty")
    with make_pipeline() as pipeline:
        dpo = pipeline | "Dpo" >> beam.Create(rows)
        pairs = pipeline | "Pairs" >> beam.Create([], reshuffle=False).with_output_types(Record)
        {"pairs": pairs, "dpo": dpo} | WriteExports(settings)
    dataset = tmp_path / "p-dataset"
    assert not (dataset / "jsonl" / "dpo").exists()  # the full JSONL set is the preference stage's
    assert pq.read_table(dataset / "parquet" / "dpo" / "train-00000-of-00001.parquet").to_pylist() == rows
    hard_jsonl = dataset / "jsonl" / "dpo-hard" / "train-00000-of-00001.jsonl"
    hard = [json.loads(line) for line in hard_jsonl.read_text().splitlines()]
    assert [r["id"] for r in hard] == ["d02", "d06"]
    assert pq.read_table(dataset / "parquet" / "dpo-hard" / "train-00000-of-00001.parquet").to_pylist() == hard


def test_every_record_field_has_a_parquet_type():
    assert set(PAIR_FIELD_TYPES) == set(Record._fields)


def test_a_row_with_a_column_the_schema_lacks_is_refused_not_dropped():
    with pytest.raises(ValueError, match="surprise"):
        parquet_bytes([{"id": "x", "prompt": "p", "completion": "c", "meta": None, "surprise": 1}],
                      SCHEMAS["prompt-completion"])


def test_a_big_parquet_shard_spills_and_streams_in_row_groups_with_rows_in_order(tmp_path, monkeypatch, sorter_spills):
    """Shards are sorted with bounded memory (runs spill to local disk) and written a row group at
    a time: same rows, same order as one in-memory sort."""
    import apache_beam as beam

    import transforms.publish.exports as exports
    from tests.conftest import make_pipeline

    monkeypatch.setattr(exports, "PARQUET_BATCH_ROWS", 7)
    spills = sorter_spills
    rows = [{"id": f"r{(i * 37) % 100:03d}", "prompt": f"p{i}", "completion": "c" * (i % 5), "meta": None}
            for i in range(100)]
    prefix = str(tmp_path / "big")
    with make_pipeline() as p:
        (p | beam.Create(rows) | exports.WriteParquetShards(prefix, 1, lambda r: r, lambda r: r["id"],
                                                              SCHEMAS["prompt-completion"], spill_chars=500))
    assert len(spills) > 5
    written = pq.ParquetFile(f"{prefix}-00000-of-00001.parquet")
    assert written.metadata.num_row_groups == 15  # 100 rows, 7 per group
    assert written.read().to_pylist() == sorted(rows, key=lambda r: r["id"])


def test_whitespace_normalization_never_touches_quoted_text():
    assert normalize_whitespace("SELECT\n  'a\n  b',  \"x  y\"\tFROM t") == "SELECT 'a\n  b', \"x  y\" FROM t"
    assert normalize_whitespace("SELECT 1 -- trailing\n+ 2") == "SELECT 1 + 2"


def test_sft_formats_without_any_schema_source_are_a_usage_error(tmp_path, capsys):
    seeds = tmp_path / "s.jsonl"
    seeds.write_text(json.dumps({"question": "How many?", "sql": "SELECT 1"}) + "\n")
    assert main(["run", "--seed_pairs", str(seeds), "--output", str(tmp_path / "p"), "--format", "sft-chat"]) == 2
    assert "--schema" in capsys.readouterr().err
    assert main(["run", "--seed_pairs", str(seeds), "--output", str(tmp_path / "p"), "--format", "csv"]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_schema_ddl_files_are_enough_for_sft_chat(tmp_path):
    ddl = tmp_path / "schema.sql"
    ddl.write_text("CREATE TABLE genre (genre_id INT PRIMARY KEY, name TEXT);\n")
    seeds = tmp_path / "s.jsonl"
    seeds.write_text(json.dumps({"question": "Name every genre.", "sql": "SELECT name FROM genre"}) + "\n")
    output = tmp_path / "o" / "p"
    assert main(["run", "--seed_pairs", str(seeds), "--schema", str(ddl), "--output", str(output),
                 "--format", "sft-chat"]) == 0
    row = json.loads((tmp_path / "o" / "p-dataset" / "jsonl" / "sft-chat" / "train-00000-of-00001.jsonl").read_text())
    assert row["messages"][0]["content"].endswith("CREATE TABLE genre (\n  genre_id INT PRIMARY KEY,\n  name TEXT\n);")


def test_schema_source_reports_whether_it_has_anything():
    assert not SchemaSource().available and SchemaSource(patterns=("x.sql",)).available


def test_the_coverage_targets_are_the_synthesizers_curriculum_in_concept_tags():
    from transforms.sql.concepts import CONCEPTS
    from transforms.publish.exports import CURRICULUM_TAGS, CURRICULUM_TARGETS

    synthesize = pytest.importorskip("transforms.generate.synthesize")
    untagged = set(synthesize.CURRICULUM) - set(CURRICULUM_TAGS) - {"filtering"}
    assert not untagged, f"curriculum concepts without a concept tag: {untagged}"
    assert set(CURRICULUM_TAGS.values()) == set(CURRICULUM_TARGETS) <= set(CONCEPTS)
