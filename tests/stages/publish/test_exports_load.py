"""The output loads where users load it: every config of the dataset card in Hugging Face ``datasets``
(offline), every set folder in ``pyarrow.dataset`` and pandas, and TRL's conversational formats
hold exactly the ``sft-chat`` messages.

The runs mix inputs so that shards differ in what they hold: the Chinook log, chat history and
seed pairs plus a parameterized log whose lines carry extra fields, over three shards — some
shards have pairs with ``parameters`` and ``extra`` keys, others none. A preference run uses
``tests/stages/publish/test_preference.py``'s canned weak model.
"""

from __future__ import annotations

import json
import os
import pathlib

os.environ["HF_DATASETS_OFFLINE"] = "1"  # never download anything, whatever the card says
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402 - after the offline switches, which it reads at import
from datasets.exceptions import DatasetGenerationError  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
import pyarrow.json as pajson  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.fakes.llm_fake_server import FakeLlmServer  # noqa: E402
from tests.stages.publish.test_preference import CANNED, SAMPLES, canned_answer  # noqa: E402

from pipeline.main import main  # noqa: E402
from transforms.core.record import Parameter, new_record, record_to_json  # noqa: E402
from transforms.publish.dataset_card import write_dataset_card  # noqa: E402
from transforms.publish.exports import SCHEMAS, parquet_bytes  # noqa: E402

EXAMPLES = REPO / "examples"
DATABASE = f"sqlite:///{EXAMPLES / 'chinook.sqlite'}"
PARAMETERIZED = [
    {"sql": "SELECT Name FROM Artist WHERE ArtistId = ?", "app": "dashboard", "duration_ms": 12},
    {"sql": "SELECT FirstName, LastName FROM Customer WHERE Country = ?", "app": "crm"},
]
FORMATS = "sft-chat,prompt-completion,prompt-completion-chat"

datasets.disable_progress_bars()


def _mixed_run(directory: pathlib.Path, formats: str) -> pathlib.Path:
    log = directory / "params.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in PARAMETERIZED))
    output = directory / "c"
    status = main(["run", "--sql_logs", f"{EXAMPLES / 'chinook_queries.sql'},{log}",
                   "--chat_history", str(EXAMPLES / "chat_history.json"),
                   "--seed_pairs", str(EXAMPLES / "seed_pairs.jsonl"), "--database", DATABASE, "--timeout_s", "2",
                   "--output", str(output), "--num_shards", "3", "--format", formats, "--html_report=false"])
    assert status == 0
    return directory / "c-dataset"


def _preference_run(directory: pathlib.Path, server: FakeLlmServer, questions) -> pathlib.Path:
    seeds = directory / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"question": q, "sql": CANNED[q][0]}) + "\n" for q in questions))
    status = main(["run", "--seed_pairs", str(seeds), "--database", DATABASE, "--output", str(directory / "p"),
                   "--num_shards", "2", "--format", "sft-chat,prompt-completion-chat,dpo-chat", "--preference",
                   "--weak_llm", "openai", "--weak_llm_endpoint", server.url, "--samples", str(SAMPLES),
                   "--dpo_neg_limit", "0", "--timeout_s", "1", "--llm_retries", "1", "--llm_backoff_s", "0.01",
                   "--html_report=false"])
    assert status == 0
    return directory / "p-dataset"


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory):
    return _mixed_run(tmp_path_factory.mktemp("jsonl"), FORMATS)


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory):
    return _mixed_run(tmp_path_factory.mktemp("parquet"), FORMATS + ",parquet")


@pytest.fixture(scope="module")
def weak_model():
    with FakeLlmServer(canned_answer) as server:
        yield server


@pytest.fixture(scope="module")
def preference_run(tmp_path_factory, weak_model):
    return _preference_run(tmp_path_factory.mktemp("preference"), weak_model, CANNED)


def _card(dataset: pathlib.Path) -> dict:
    text = (dataset / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n")[1])


def _declared(dataset: pathlib.Path) -> dict[str, str]:
    """config name → its data_files pattern, as the card declares them."""
    return {c["config_name"]: c["data_files"][0]["path"] for c in _card(dataset)["configs"]}


def _files(dataset: pathlib.Path, pattern: str) -> list[pathlib.Path]:
    files = sorted(dataset.glob(pattern))
    assert files, pattern
    return files


def _rows_in_files(files: list[pathlib.Path]) -> int:
    if files[0].suffix == ".parquet":
        return sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return sum(len(path.read_text(encoding="utf-8").splitlines()) for path in files)


def _load(dataset: pathlib.Path, config: str, cache: pathlib.Path) -> datasets.Dataset:
    return datasets.load_dataset(str(dataset), config, split="train", cache_dir=str(cache))


def _jsonl_rows(dataset: pathlib.Path, set_name: str) -> list[dict]:
    return [json.loads(line) for path in _files(dataset, f"jsonl/{set_name}/train-*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("run", ["jsonl_run", "parquet_run", "preference_run"])
def test_every_config_the_card_declares_loads_with_every_row(run, request, tmp_path):
    dataset = request.getfixturevalue(run)
    declared = _declared(dataset)
    if run == "preference_run":  # seed pairs that all validate: no dead letters, so no rejects config
        assert list(declared) == ["pairs", "sft-chat", "prompt-completion-chat", "dpo", "dpo-chat"]
    else:
        assert list(declared) == ["pairs", *FORMATS.split(","), "rejects"]
    infos = {info["config_name"] for info in _card(dataset)["dataset_info"]}
    assert infos == set(declared)  # every config's features are declared
    for config, pattern in declared.items():
        loaded = _load(dataset, config, tmp_path / "cache")
        expected = _rows_in_files(_files(dataset, pattern))
        assert loaded.num_rows == expected > 0, config


def test_the_mixed_run_has_shards_whose_inferred_types_differ(jsonl_run):
    """The precondition of the test above: read one file at a time, as a reader without the card's
    features does, the shards disagree on column types."""
    files = _files(jsonl_run, "jsonl/pairs/train-*.jsonl")
    assert len(files) == 3
    inferred = [pajson.read_json(path).schema for path in files]
    for column in ("parameters", "parent_id", "extra"):
        assert len({str(schema.field(column).type) for schema in inferred}) > 1, column


def test_the_declared_features_load_a_first_shard_that_holds_only_empty_values(tmp_path):
    """The case a reader inferring types from the first file cannot load: there ``parameters`` is
    always ``[]`` and ``parent_id``, ``evolution`` always null; the next shard has values."""
    bare = new_record("SELECT COUNT(*) FROM artist", "How many artists are there?", source="seed")
    full = new_record("SELECT name FROM artist WHERE artistid = 1", "Name artist 1.", parent_id=bare.id,
                      evolution="instantiate", extra={"app": "crm"})._replace(
        parameters=(Parameter("1", 1, "int", None, "1"),))
    dataset = tmp_path / "p-dataset"
    for index, record in enumerate((bare, full)):
        shard = dataset / "jsonl" / "pairs" / f"train-{index:05d}-of-00002.jsonl"
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.write_text(record_to_json(record) + "\n")
    report = {"accounting": {"pairs_written": 2, "dead_letters": 0}, "options": {"dialect": "sqlite"}}
    assert write_dataset_card(str(tmp_path / "p"), report) == str(dataset / "README.md")
    files = [str(p) for p in _files(dataset, "jsonl/pairs/train-*.jsonl")]
    with pytest.raises(DatasetGenerationError):  # what users met before the card declared its features
        datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(tmp_path / "bare"))
    pairs = _load(dataset, "pairs", tmp_path / "cache")
    assert pairs.num_rows == 2 and pairs[1]["parameters"][0]["value"] == "1" and pairs[1]["extra"] == {"app": "crm"}


def test_the_pairs_load_with_the_declared_types(jsonl_run, tmp_path):
    pairs = _load(jsonl_run, "pairs", tmp_path / "cache")
    assert isinstance(pairs.features["extra"], datasets.Json)  # an object whose keys vary by row
    assert pairs.features["parent_id"] == datasets.Value("string")
    by_id = {row["id"]: row for row in pairs}
    for row in _jsonl_rows(jsonl_run, "pairs"):
        assert by_id[row["id"]]["extra"] == row["extra"] and by_id[row["id"]]["parameters"] == row["parameters"]


def test_the_pairs_set_is_the_pairs_file_byte_for_byte(jsonl_run):
    for index in range(3):
        name = f"{index:05d}-of-00003.jsonl"
        assert (jsonl_run / "jsonl" / "pairs" / f"train-{name}").read_bytes() == (
            jsonl_run.parent / f"c-{name}").read_bytes()


def test_pyarrow_and_pandas_read_every_parquet_set_folder_directly(parquet_run):
    folders = sorted(p for p in (parquet_run / "parquet").iterdir() if p.is_dir())
    assert [p.name for p in folders] == sorted(["pairs", *FORMATS.split(","), "rejects"])
    for folder in folders:
        rows = _rows_in_files(_files(folder, "train-*.parquet"))
        assert pads.dataset(folder, format="parquet").to_table().num_rows == rows > 0, folder.name
        frame = pd.read_parquet(folder)
        assert len(frame) == rows, folder.name
    extra = pd.read_parquet(parquet_run / "parquet" / "pairs")["extra"]
    assert {key for text in extra for key in json.loads(text)} >= {"app", "duration_ms"}  # JSON text, not tuples


def test_pandas_reads_every_jsonl_shard(parquet_run):
    for folder in sorted(p for p in (parquet_run / "jsonl").iterdir() if p.is_dir()):
        for path in _files(folder, "train-*.jsonl"):
            lines = _rows_in_files([path])
            if lines:
                assert len(pd.read_json(path, lines=True)) == lines, path


def test_dead_letters_load_without_being_told_their_types(jsonl_run, tmp_path):
    files = [str(p) for p in _files(jsonl_run, "jsonl/rejects/train-*.jsonl")]
    rejects = datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert rejects.num_rows == _rows_in_files([pathlib.Path(f) for f in files]) > 0
    assert pads.dataset(jsonl_run / "jsonl" / "rejects", format="json").to_table().num_rows == rejects.num_rows
    flat = [json.loads(line) for path in sorted(jsonl_run.parent.glob("c-rejects-*.jsonl"))
            for line in path.read_text().splitlines()]  # PREFIX-rejects-…: the record as an object
    as_set = [dict(row, record=json.loads(row["record"])) for row in rejects]
    assert any(row["record"] is None for row in as_set) and any(row["record"] for row in as_set)
    assert sorted(map(json.dumps, as_set)) == sorted(json.dumps(dict(row, origin=row["origin"] or "")) for row in flat)


def test_conversational_formats_hold_the_sft_chat_messages(preference_run, tmp_path):
    sft = {row["id"]: row["messages"] for row in _jsonl_rows(preference_run, "sft-chat")}
    completion = _jsonl_rows(preference_run, "prompt-completion-chat")
    assert sorted(row["id"] for row in completion) == sorted(sft)
    for row in completion:
        assert row["prompt"] + row["completion"] == sft[row["id"]]
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    dpo = {row["id"]: row for row in _jsonl_rows(preference_run, "dpo")}
    chat = _jsonl_rows(preference_run, "dpo-chat")
    assert sorted(row["id"] for row in chat) == sorted(dpo) and chat
    for row in chat:
        plain = dpo[row["id"]]
        assert row["prompt"] == sft[plain["meta"]["record_id"]][:2]
        assert row["chosen"] == [{"role": "assistant", "content": plain["chosen"]}]
        assert row["rejected"] == [{"role": "assistant", "content": plain["rejected"]}]
        assert row["meta"] == plain["meta"]
    loaded = _load(preference_run, "dpo-chat", tmp_path / "cache")
    assert sorted(loaded["id"]) == sorted(dpo) and loaded[0]["prompt"][0]["role"] == "system"
    assert pq.read_table(pa.BufferReader(parquet_bytes(chat, SCHEMAS["dpo-chat"]))).to_pylist() == chat


def test_a_run_without_a_dpo_pair_declares_no_dpo_config(tmp_path, weak_model):
    everything_right = [q for q, (_, samples) in CANNED.items() if {label for _, label in samples} == {"correct"}]
    dataset = _preference_run(tmp_path, weak_model, everything_right)
    assert list(_declared(dataset)) == ["pairs", "sft-chat", "prompt-completion-chat"]
    for config in _declared(dataset):
        assert _load(dataset, config, tmp_path / "cache").num_rows == 1
