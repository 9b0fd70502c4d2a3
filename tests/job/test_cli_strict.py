"""The command line refuses what it does not understand, explains itself, and stays quiet.

Unknown or abbreviated options and options that nothing would read are one-line errors
(exit 2) before any pipeline starts; every Beam option still passes through; ``--help`` is
grouped and short; long local runs print progress lines; a normal run logs no warnings.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import main as cli
from pipeline.arguments import NEEDS, given_options, parse_run_options
from pipeline.main import main
from pipeline.progress import progress_line, wants_progress
from pipeline.options import HELP_SECTIONS, OPTION_NAMES, OPTION_SPECS
from tests.conftest import REPO

LOGS = str(REPO / "examples" / "chinook_queries.sql")
SEEDS = str(REPO / "examples" / "seed_pairs.jsonl")
CHATS = str(REPO / "examples" / "chat_history.json")
DATABASE = f"sqlite:///{REPO / 'examples' / 'chinook.sqlite'}"


class _OnlyInThisTestOptions(PipelineOptions):
    """A Beam options class Beam's parser learns about like any other (so none is hand-listed)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--strict_cli_test_only_option")


def _error(capsys, *args: str) -> str:
    """Run ``sqlpairs run ARGS``; it must fail with exit 2 and one ``sqlpairs: error:`` line."""
    assert main(["run", *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqlpairs: error: "), lines
    return lines[0][len("sqlpairs: error: "):]


# --- unknown options ------------------------------------------------------------------------


def test_a_misspelled_option_is_refused_with_the_nearest_name_and_nothing_runs(capsys, tmp_path):
    message = _error(capsys, "--sql_logs", LOGS, "--databse", DATABASE, "--output", str(tmp_path / "o"))
    assert message == "unknown option --databse (did you mean --database?)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--num_shard", "2"], "unknown option --num_shard (did you mean --num_shards?)"),  # no prefixes of ours
    (["--direct_num_worker", "2"], "unknown option --direct_num_worker (did you mean --direct_num_workers?)"),
    (["--temp_loc=gs://b/t"], "unknown option --temp_loc (did you mean --temp_location?)"),
    (["--frobnicate"], "unknown option --frobnicate"),
    (["-o", "x"], "unknown option -o"),
    (["stray.sql"], "unexpected argument 'stray.sql'"),
])
def test_unknown_and_abbreviated_options_are_refused(capsys, tmp_path, args, message):
    assert _error(capsys, "--sql_logs", LOGS, "--output", str(tmp_path / "o"), *args).startswith(message)


def test_the_subprocess_command_line_prints_one_line_and_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline", "run", "--sql_logs", LOGS, "--databse", DATABASE,
                             "--output", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "sqlpairs: error: unknown option --databse (did you mean --database?)"


def test_every_beam_option_passes_through_in_order():
    beam = ["--runner=DataflowRunner", "--project", "p", "--region", "europe-west1", "--temp_location", "gs://b/t",
            "--direct_running_mode", "multi_threading", "--direct_num_workers", "2", "--sdk_container_image", "img",
            "--setup_file", "./setup.py", "--experiments", "a", "--experiments=b", "--no_auth", "--dry_run=True",
            "--strict_cli_test_only_option", "x"]
    values, rest = parse_run_options(["--sql_logs", LOGS, *beam, "--output", "out/o", "--num_shards", "2"])
    assert rest == beam
    assert values.sql_logs == LOGS and values.output == "out/o" and values.num_shards == 2


def test_a_bad_beam_value_is_a_one_line_error(capsys, tmp_path):
    message = _error(capsys, "--sql_logs", LOGS, "--output", str(tmp_path / "o"), "--direct_running_mode", "fast")
    assert "--direct_running_mode" in message and "invalid choice" in message


def test_values_that_look_like_options_are_values():
    values, rest = parse_run_options(["--sql_logs", LOGS, "--output", "o", "--input_licenses=--databse x",
                                      "--seed", "-3"])
    assert values.input_licenses == "--databse x" and values.seed == -3 and rest == []
    assert given_options(["--input_licenses=--samples", "--seed", "-3"]) == {"input_licenses", "seed"}


# --- options that need another ----------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--weak_llm", "openai"], "--weak_llm needs --preference"),
    (["--samples", "2"], "--samples needs --preference"),
    (["--dpo_keep_gold"], "--dpo_keep_gold needs --preference"),
    (["--weak_temperature", "1.0"], "--weak_temperature needs --preference"),
    (["--preference=false", "--samples", "2"], "--samples needs --preference"),
    (["--consistency_llm", "openai"], "--consistency_llm needs --consistency"),
    (["--consistency_llm_model", "m"], "--consistency_llm_model needs --consistency"),
    (["--llm_model", "m"], "--llm_model needs a model that writes questions"),
    (["--llm", "rules", "--llm_temperature", "0.2"], "--llm_temperature needs a model that writes questions"),
    (["--llm_project", "p"], "--llm_project needs a model"),
    (["--llm_rpm", "60"], "--llm_rpm needs a model"),
    (["--questions_per_sql", "3"], "--questions_per_sql needs a model"),
    (["--database_password_env", "PGPASSWORD"], "--database_password_env needs --database"),
    (["--timeout_s", "2"], "--timeout_s needs --database"),
    (["--database", DATABASE, "--sft_sample_rows", "2"], "--sft_sample_rows needs an export with a prompt"),
    (["--database", DATABASE, "--depth", "1", "--llm", "openai", "--llm_endpoint", "http://127.0.0.1:9",
      "--personas_file", "p.json"], "--personas_file needs --synthesize_from_schema"),
    (["--database", DATABASE, "--personas", "2", "--teachings", "t.json"], "--teachings needs a generator"),
    (["--depth_techniques", "add-join"], "--depth_techniques needs --depth"),
    (["--max_repairs", "1"], "--max_repairs needs --synthesize_from_schema or --depth"),
    (["--near_dup_threshold", "0.9"], "--near_dup_threshold needs --dedup exact or --dedup question-only"),
    (["--tool_name", "sql"], "--tool_name needs --chat_history"),
    (["--context", "window:3"], "--context needs --chat_history"),
    (["--sql_logs_format", "csv"], "--sql_logs_format needs --sql_logs"),
])
def test_an_option_nothing_would_read_is_refused(capsys, tmp_path, args, message):
    inputs = ["--sql_logs", LOGS] if "--sql_logs_format" not in args else ["--seed_pairs", SEEDS]
    assert _error(capsys, *inputs, *args, "--output", str(tmp_path / "o")).startswith(message)


@pytest.mark.parametrize("args", [
    ["--database", DATABASE, "--preference", "--weak_llm", "openai", "--samples", "2", "--dpo_keep_gold"],
    ["--database", DATABASE, "--consistency", "--consistency_llm", "openai", "--consistency_llm_model", "m"],
    ["--llm", "openai", "--llm_model", "m", "--llm_temperature", "0.1", "--questions_per_sql", "2"],
    ["--consistency", "--llm_project", "p", "--llm_rpm", "60"],  # the round-trip model keeps --llm's project
    ["--preference", "--llm_timeout_s", "9", "--llm_cache", "c"],  # the weak model shares the request machinery
    ["--database", DATABASE, "--database_password_env", "PGPASSWORD", "--timeout_s", "2"],
    ["--database", DATABASE, "--format", "sft-chat", "--sft_sample_rows", "2"],
    ["--synthesize_from_schema", "1", "--personas_file", "p.json", "--max_repairs", "0"],
    ["--breadth", "1", "--teachings", "t.json", "--dedup", "exact", "--near_dup_threshold", "0.9"],
    ["--depth", "1", "--depth_techniques", "add-join", "--dedup", "question-only", "--near_dup_threshold", "0.9"],
    ["--chat_history", CHATS, "--tool_name", "sql", "--context", "window:3", "--include_failures"],
    ["--seed_pairs", SEEDS, "--sql_field", "query", "--question_field", "q", "--db_id_field", "db"],
    ["--sql_logs_format", "sql", "--llm", "rules", "--seed", "1"],
])
def test_with_what_they_need_the_options_are_accepted(args):
    parse_run_options(["--sql_logs", LOGS, *args, "--output", "o"])  # no UserError


def test_defaults_passed_explicitly_as_a_flex_template_may_are_accepted():
    """metadata.json declares defaultValues; a launch may pass them all although the user set none."""
    defaults = [f"--{spec.name}={str(spec.default).lower() if isinstance(spec.default, bool) else spec.default}"
                for spec in OPTION_SPECS if spec.default is not None and spec.name != "output"]
    assert len(defaults) > 30
    values, rest = parse_run_options(["--sql_logs", LOGS, "--output", "o", *defaults])
    assert rest == [] and values.samples == 4 and values.tool_name == "db_query"


def test_every_model_option_is_covered_by_a_rule():
    covered = {name for rule in NEEDS for name in rule.options}
    assert covered <= set(OPTION_NAMES)
    model_options = {n for n in OPTION_NAMES if n.startswith(("llm_", "weak_", "consistency_llm", "dpo_"))}
    assert model_options <= covered, model_options - covered


# --- --help ---------------------------------------------------------------------------------


def test_run_help_is_grouped_short_and_ends_with_the_beam_options(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    usage = text.split("\n\n")[0]
    assert usage.startswith("usage: sqlpairs run --output PREFIX ") and usage.count("\n") <= 1
    assert "[Beam options]" in usage
    positions = [text.index(f"\n{title}:\n") for title, _ in HELP_SECTIONS]
    assert positions == sorted(positions)
    assert text.index("\nBeam pass-through:\n") > positions[-1]
    for name in ("--runner", "--direct_running_mode", "--project", "--region", "--temp_location"):
        assert name in text.split("Beam pass-through:")[1]
    for spec in OPTION_SPECS:
        assert f"--{spec.name}" in text
    assert re.search(r"^  --output PREFIX +Required\.", text, re.M)
    assert re.search(r"^  --keep_failures +Keep", text, re.M)  # a switch, not --keep_failures [KEEP_FAILURES]
    assert re.search(r"^  --html_report=false +Also", text, re.M)  # on by default: how to turn it off
    assert "[KEEP_FAILURES]" not in text and "[HTML_REPORT]" not in text


def test_top_level_help_names_the_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "sqlpairs run --help" in text and "metadata" in text and text.startswith("usage: sqlpairs run")
    assert main(["rnu"]) == 2
    assert capsys.readouterr().err.strip() == "sqlpairs: error: unknown command 'rnu' (did you mean run?)"


# --- progress -------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_unless_stderr_is_a_terminal_or_it_is_asked_for(monkeypatch):
    monkeypatch.delenv("SQLPAIRS_PROGRESS", raising=False)
    quiet = argparse.Namespace()
    assert not wants_progress(quiet, io.StringIO())
    assert wants_progress(quiet, _Terminal())
    monkeypatch.setenv("SQLPAIRS_PROGRESS", "1")
    assert wants_progress(quiet, io.StringIO())
    monkeypatch.setenv("SQLPAIRS_PROGRESS", "0")
    assert not wants_progress(quiet, _Terminal())
    assert wants_progress(argparse.Namespace(progress=True), io.StringIO())  # --progress, once options.py has it


def test_progress_line_counts_reads_pairs_dead_letters_and_requests():
    counts = {"read.out": 30, "read.rejected.sql_too_long": 2, "safety.rejected.ddl": 3, "dedup.out": 20,
              "llm.questions.requests": 5, "llm.segment.requests": 1, "llm.questions.calls": 9}
    assert progress_line(counts, 4.0) == ("sqlpairs: 4 s: 32 records read (8/s), 20 pairs, 5 dead letters, "
                                          "6 model requests")


_PROGRESS = re.compile(r"^sqlpairs: (\d+) s: (\d+) records read \(\d+/s\), (\d+) pairs, (\d+) dead letters, "
                       r"(\d+) model requests$")


def test_a_local_run_prints_progress_from_beams_metrics_and_writes_the_same_bytes(tmp_path, monkeypatch, capsys):
    args = ["run", "--sql_logs", LOGS, "--seed_pairs", SEEDS, "--database", DATABASE, "--html_report=false"]
    monkeypatch.setenv("SQLPAIRS_PROGRESS", "0")
    assert main([*args, "--output", str(tmp_path / "quiet")]) == 0
    quiet_err = capsys.readouterr().err
    monkeypatch.setenv("SQLPAIRS_PROGRESS", "1")
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.05)
    assert main([*args, "--output", str(tmp_path / "loud")]) == 0
    loud_err = capsys.readouterr().err
    assert not any(_PROGRESS.match(line) for line in quiet_err.splitlines())
    lines = [_PROGRESS.match(line) for line in loud_err.splitlines() if line.startswith("sqlpairs: ")]
    progress = [tuple(int(n) for n in m.groups()[1:]) for m in lines if m]
    assert progress, loud_err
    read = [p[0] for p in progress]
    assert read == sorted(read) and read[-1] > 0  # live counts, only growing
    total = int(re.search(r"from (\d+) records", loud_err).group(1))
    assert read[-1] <= total
    for name in ("", "-rejects"):
        quiet = (tmp_path / f"quiet{name}-00000-of-00001.jsonl").read_bytes()
        assert quiet == (tmp_path / f"loud{name}-00000-of-00001.jsonl").read_bytes()


# --- no warnings ----------------------------------------------------------------------------


def test_the_readme_example_run_logs_no_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--sql_logs", LOGS, "--chat_history", CHATS, "--seed_pairs", SEEDS,
         "--database", DATABASE, "--timeout_s", "2", "--output", str(tmp_path / "chinook")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [line for line in result.stderr.splitlines() if "WARNING" in line or "Traceback" in line]


def test_a_model_run_with_exports_logs_no_warnings(tmp_path):
    from tests.fakes.llm_fake_server import FakeLlmServer

    with FakeLlmServer() as server:
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--sql_logs", LOGS, "--database", DATABASE, "--timeout_s", "2",
             "--llm", "openai", "--llm_endpoint", server.url, "--format", "sft-chat,parquet",
             "--output", str(tmp_path / "llm")],
            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [line for line in result.stderr.splitlines() if "WARNING" in line or "Traceback" in line]
