"""Secrets never leak: database passwords and model API keys appear in no output file, no
captured stdout/stderr, no log record (at DEBUG), no error message and not in the job graph.

Each secret is a fresh random string, so finding it anywhere can only mean a leak. The
database runs use a throwaway PostgreSQL role with a password (the local server trusts
127.0.0.1, so the password is sent but not checked — enough to prove where it goes); the
model runs use a local OpenAI-compatible server that records the ``Authorization`` header
(proving the key was really sent) and, in one test, echoes the key back in its error, as
some gateways do.
"""

from __future__ import annotations

import base64
import bz2
import json
import logging
import re
import secrets
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.main import main
from pipeline.options import OPTION_SPECS
from tests.conftest import REPO
from tests.hostile.job import run_job

QUERIES = REPO / "examples" / "chinook_queries.sql"


def _secret(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(12)}"


def assert_nowhere(secret: str, job, captured, caplog) -> None:
    """``secret`` is in no file the run wrote, in no captured output and in no log record."""
    assert job.files, "the run wrote nothing to search"
    for path in job.files:
        assert secret not in path.read_text(encoding="utf-8", errors="replace"), f"leaked into {path.name}"
    assert secret not in captured.out and secret not in captured.err, "leaked into stdout/stderr"
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert secret not in text, f"leaked into a log record of {record.name}"


SECRET_WORDS = ("password", "key", "secret", "token", "credential")


def test_no_option_takes_a_secret_value_only_the_name_of_a_variable():
    secret_options = [spec.name for spec in OPTION_SPECS if any(word in spec.name for word in SECRET_WORDS)]
    # the options known to name a secret are found, so the check below has something to check
    assert {"database_password_env", "llm_api_key_env"} <= set(secret_options), secret_options
    assert [name for name in secret_options if not name.endswith("_env")] == []


# --- PostgreSQL --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_role():
    """A role with a random password and a table it may read, dropped afterwards."""
    import adapters.db.postgres  # noqa: F401 - the executor under test: missing is a failure, not a skip
    from tests.fakes.db_fixtures import pg_connect, postgres_is_up, _unavailable

    if not postgres_is_up():  # skips on a developer's machine only: in CI (CI=true) it fails
        _unavailable("PostgreSQL is not reachable at 127.0.0.1:5432")
    suffix = secrets.token_hex(4)
    role, table, password = f"sqlpairs_secret_{suffix}", f"sqlpairs_secret_probe_{suffix}", _secret("dbpw")
    with pg_connect("postgres") as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        with pg_connect("postgres") as conn:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
            conn.execute(f"INSERT INTO {table} VALUES (1, 'one'), (2, 'two')")
            conn.execute(f"GRANT SELECT ON {table} TO {role}")
        yield {"role": role, "table": table, "password": password,
               "url": f"postgresql://{role}@127.0.0.1:5432/postgres"}
    finally:
        with pg_connect("postgres") as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def _queries(tmp_path, table):
    path = tmp_path / "queries.sql"
    path.write_text(
        f"SELECT name FROM {table} WHERE id = 1;\n"
        f"SELECT missing_column FROM {table};\n"  # the server's error text goes into a dead letter
        "SELECT count(*) FROM generate_series(1, 200000000);\n"  # a timeout, cancelled by the server
        "DROP TABLE pg_class;\n"
    )
    return path


def test_a_password_from_the_environment_leaks_nowhere(pg_role, tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.setenv("SQLPAIRS_TEST_DB_PASSWORD", pg_role["password"])
    caplog.set_level(logging.DEBUG)
    job = run_job(["--sql_logs", _queries(tmp_path, pg_role["table"]), "--database", pg_role["url"],
                   "--database_password_env", "SQLPAIRS_TEST_DB_PASSWORD", "--timeout_s", "1"], tmp_path / "out")
    assert job.status == 0
    statuses = {p["normalized_sql"].split(" FROM")[0]: p["execution"]["status"] for p in job.pairs}
    assert statuses.get("SELECT name") == "ok"  # it really connected with the role
    assert {d["reason"] for d in job.dead} >= {"not_a_query"}
    assert_nowhere(pg_role["password"], job, capfd.readouterr(), caplog)


def test_a_password_written_into_the_url_is_redacted_everywhere(pg_role, tmp_path, capfd, caplog):
    password = _secret("urlpw")
    url = pg_role["url"].replace(f"//{pg_role['role']}@", f"//{pg_role['role']}:{password}@")
    caplog.set_level(logging.DEBUG)
    job = run_job(["--sql_logs", _queries(tmp_path, pg_role["table"]), "--database", url, "--timeout_s", "1"],
                  tmp_path / "out")
    assert job.status == 0 and job.pairs
    assert job.report["options"]["database"] == url.replace(password, "***")
    assert_nowhere(password, job, capfd.readouterr(), caplog)


def test_the_job_graph_carries_the_variable_name_never_the_password(pg_role, tmp_path, monkeypatch):
    """What a runner uploads (the pipeline proto, pickled DoFns included) holds no secret."""
    import apache_beam as beam

    from pipeline.graph import build
    from pipeline.arguments import options_parser
    from pipeline.config import resolve

    monkeypatch.setenv("SQLPAIRS_TEST_DB_PASSWORD", pg_role["password"])
    values, _ = options_parser("test").parse_known_args(
        ["--sql_logs", str(QUERIES), "--output", str(tmp_path / "o"), "--database", pg_role["url"],
         "--database_password_env", "SQLPAIRS_TEST_DB_PASSWORD"])
    pipeline = beam.Pipeline(runner="FnApiRunner")
    build(pipeline, resolve(values))
    graph = _readable_graph(pipeline)
    assert b"SQLPAIRS_TEST_DB_PASSWORD" in graph  # the name travels, to be read on the worker
    assert pg_role["password"].encode() not in graph


def _readable_graph(pipeline) -> bytes:
    """The serialized pipeline plus every pickled payload in it, unpacked (Beam stores pickles as
    base64 of bz2/zlib, which would hide a secret from a plain byte search)."""
    graph = pipeline.to_runner_api().SerializeToString()
    unpacked = [graph]
    for blob in re.findall(rb"[A-Za-z0-9+/]{32,}={0,2}", graph):
        try:
            data = base64.b64decode(blob)
        except ValueError:
            continue
        for decompress in (bz2.decompress, zlib.decompress):
            try:
                unpacked.append(decompress(data))
            except (OSError, ValueError, zlib.error):
                continue
    assert len(unpacked) > 10, "no pickled payloads found: the search would prove nothing"
    return b"\n".join(unpacked)


@pytest.mark.parametrize("scheme, port", [("postgresql", 1), ("mysql", 1)])
def test_an_unreachable_database_is_one_line_without_the_password(scheme, port, tmp_path, monkeypatch, capfd,
                                                                   caplog):
    in_url, in_env = _secret("urlpw"), _secret("envpw")
    monkeypatch.setenv("SQLPAIRS_TEST_DB_PASSWORD", in_env)
    caplog.set_level(logging.DEBUG)
    for extra in ([], ["--database_password_env", "SQLPAIRS_TEST_DB_PASSWORD"]):
        status = main(["run", "--sql_logs", str(QUERIES), "--output", str(tmp_path / "o"),
                       "--database", f"{scheme}://bob:{in_url}@127.0.0.1:{port}/nowhere", *extra])
        err = capfd.readouterr().err
        assert status == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("sqlpairs: error:"), err
        assert "127.0.0.1" in lines[0] and "bob:***@" in lines[0]
        for secret in (in_url, in_env):
            assert secret not in err
            assert not any(secret in record.getMessage() for record in caplog.records)
    assert not list(tmp_path.iterdir())


# --- model API keys ----------------------------------------------------------------------------

@pytest.fixture
def fake_model():
    from tests.fakes.llm_fake_server import FakeLlmServer

    with FakeLlmServer() as server:
        yield server


def _llm_args(url, tmp_path):
    logs = tmp_path / "few.sql"
    logs.write_text("SELECT Name FROM Artist;\nSELECT COUNT(*) FROM Track;\nSELECT Title FROM Album LIMIT 3;\n")
    return ["--sql_logs", str(logs), "--llm", "openai", "--llm_endpoint", f"{url}/v1", "--llm_model", "fake",
            "--llm_api_key_env", "SQLPAIRS_TEST_LLM_KEY", "--llm_retries", "0", "--llm_timeout_s", "10"]


def test_an_api_key_from_the_environment_is_sent_and_leaks_nowhere(fake_model, tmp_path, monkeypatch, capfd, caplog):
    key = _secret("sk")
    monkeypatch.setenv("SQLPAIRS_TEST_LLM_KEY", key)
    caplog.set_level(logging.DEBUG)
    job = run_job(_llm_args(fake_model.url, tmp_path), tmp_path / "out")
    assert job.status == 0 and any(p["question_source"] == "llm" for p in job.pairs)
    assert {call.headers.get("Authorization") for call in fake_model.calls} == {f"Bearer {key}"}
    assert_nowhere(key, job, capfd.readouterr(), caplog)


class _EchoingGateway(BaseHTTPRequestHandler):
    """Refuses every call with a 401 whose message quotes the key it was given."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "code": 401}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_an_api_key_echoed_back_by_the_server_is_kept_out_of_dead_letters(tmp_path, monkeypatch, capfd, caplog):
    key = _secret("sk")
    monkeypatch.setenv("SQLPAIRS_TEST_LLM_KEY", key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        caplog.set_level(logging.DEBUG)
        job = run_job(_llm_args(f"http://127.0.0.1:{server.server_port}", tmp_path), tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert job.status == 0
    assert any(d["stage"] == "llm" and "401" in d["detail"] for d in job.dead)  # the refusals are visible
    assert_nowhere(key, job, capfd.readouterr(), caplog)
