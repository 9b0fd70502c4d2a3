"""The Flex Template: metadata.json is our options, the image is the lock's Beam (constraints.txt, within
setup.py's ranges), the launcher submits without waiting, and secrets come from Secret Manager by name
only."""

from __future__ import annotations

import importlib.metadata
import json
import importlib.util
import os
import re
import subprocess
import sys

from typing import Optional

import apache_beam as beam
import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from pipeline import main as sqlpairs_main
from pipeline.metadata import metadata, metadata_json, regex_for
from pipeline.options import OPTION_SPECS
from tests.conftest import IN_CI, REPO

TEMPLATES = REPO / "templates"


def _load(name: str):
    """A module from templates/ (a directory of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"sqlpairs_templates_{name}", TEMPLATES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(TEMPLATES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TEMPLATES))
    return module


# --- metadata.json ----------------------------------------------------------------------------


def test_metadata_parameters_are_exactly_the_options_with_their_help():
    parameters = {p["name"]: p for p in metadata()["parameters"]}
    assert list(parameters) == [spec.name for spec in OPTION_SPECS]
    for spec in OPTION_SPECS:
        assert parameters[spec.name]["helpText"] == spec.help
        assert parameters[spec.name]["label"] == spec.label


def test_committed_metadata_json_is_the_generated_one():
    committed = (TEMPLATES / "metadata.json").read_text(encoding="utf-8")
    assert committed == metadata_json() + "\n", (
        "templates/metadata.json is stale: run `python -m pipeline metadata > templates/metadata.json`"
    )


def test_metadata_is_valid_dataflow_template_metadata():
    dataflow = pytest.importorskip("google.cloud.dataflow_v1beta3", reason="needs apache-beam[gcp]")
    from google.protobuf import json_format

    parsed = json_format.ParseDict(metadata(), dataflow.TemplateMetadata.pb(dataflow.TemplateMetadata()))
    assert len(parsed.parameters) == len(OPTION_SPECS)
    assert [p.name for p in parsed.parameters if not p.is_optional] == ["output"]


def test_every_default_choice_and_boolean_passes_its_own_regex():
    for spec in OPTION_SPECS:
        regex = regex_for(spec)
        if regex is None:
            continue
        parameter = next(p for p in metadata()["parameters"] if p["name"] == spec.name)
        candidates = list(spec.choices or ()) + ([parameter["defaultValue"]] if "defaultValue" in parameter else [])
        if spec.flag:
            candidates += ["true", "false"]
        for value in candidates:
            assert re.fullmatch(regex, value), f"--{spec.name}={value} fails its own regex {regex}"


def test_numeric_regexes_refuse_words():
    numeric = [s for s in OPTION_SPECS if getattr(s.type, "__name__", "") in ("_positive_int", "int")]
    assert numeric, "expected integer options such as --max_rows"
    for spec in numeric:
        assert not re.fullmatch(regex_for(spec), "ten")


# --- Dockerfile ------------------------------------------------------------------------------


def _locked() -> dict[str, list[tuple[str, str]]]:
    """constraints.txt as {name: [(version, marker), ...]} (a universal lock may pin a package twice)."""
    pins: dict[str, list[tuple[str, str]]] = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.*))?$", line)
        if match:
            pins.setdefault(canonicalize_name(match.group(1)), []).append((match.group(2), match.group(3) or ""))
    return pins


def _locked_here(name: str) -> Optional[str]:
    """The locked version of ``name`` for this interpreter (markers evaluated), or None."""
    for version, marker in _locked().get(canonicalize_name(name), []):
        if not marker or Marker(marker).evaluate():
            return version
    return None


def _setup_requirements() -> list[Requirement]:
    """Every requirement of setup.py: install_requires and every extra."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    block = text[text.index("install_requires"):text.index("entry_points")]
    return [Requirement(spec) for spec in re.findall(r'"([A-Za-z][A-Za-z0-9_.\-]*(?:\[[a-z,-]+\])?[<>=!~][^"]*)"', block)]


def test_dockerfile_beam_is_the_locked_beam():
    dockerfile = (TEMPLATES / "Dockerfile").read_text(encoding="utf-8")
    arg = re.search(r"^ARG BEAM_VERSION=([0-9.]+)$", dockerfile, re.M).group(1)
    locked = {version for version, _ in _locked()["apache-beam"]}
    assert locked == {arg}, f"constraints.txt pins apache-beam {locked}, the Dockerfile builds {arg}: run bash .ci/lock"
    # the SDK image's tag is the ARG itself, so the image cannot drift from the lock either
    sdk_images = re.findall(r"^FROM apache/beam_python(3\.\d+)_sdk:(\S+)$", dockerfile, re.M)
    assert sdk_images == [("3.11", "${BEAM_VERSION}")]
    # the image installs the job with the lock, next to the image's own (locked) Beam
    assert "COPY setup.py README.md constraints.txt ./" in dockerfile
    assert re.search(r'pip install --no-cache-dir -c constraints\.txt "\.\[gcp\]"', dockerfile)


def test_lock_pins_a_version_setup_py_allows_for_every_requirement():
    requirements = _setup_requirements()
    assert any(r.name == "apache-beam" for r in requirements) and any(r.name == "sqlglot" for r in requirements)
    for requirement in requirements:
        pins = _locked().get(canonicalize_name(requirement.name))
        assert pins, f"constraints.txt does not pin {requirement.name}: run bash .ci/lock"
        for version, _ in pins:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"constraints.txt pins {requirement.name}=={version}, outside setup.py's {requirement}")


def test_this_environment_runs_the_locked_versions():
    """In CI (installed from the lock, as the README says) every locked package is at its pin.

    On a developer machine installed another way this would only report that machine, so it runs
    in CI alone: there it proves that a new upstream release changes nothing until the lock moves.
    """
    if not IN_CI:
        pytest.skip("checks the CI install (CI=true), which uses constraints.txt")
    drift = []
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        locked = _locked_here(name)
        if locked is not None and Version(distribution.version) != Version(locked):
            drift.append(f"{name} {distribution.version} (locked {locked})")
    assert not drift, "installed versions differ from constraints.txt: " + ", ".join(sorted(drift))
    assert beam.__version__ == _locked_here("apache-beam")


def test_dockerfile_is_launcher_and_sdk_image_without_launch_time_installs():
    dockerfile = (TEMPLATES / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM gcr\.io/dataflow-templates-base/python3\d*-template-launcher-base|"
                     r"^ARG LAUNCHER_IMAGE=gcr\.io/dataflow-templates-base/python3\d*-template-launcher-base",
                     dockerfile, re.M)
    assert "/opt/google/dataflow/python_template_launcher" in dockerfile
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/templates/main.py" in dockerfile
    # the package is installed in the image: nothing may be pip-installed on the launcher VM
    assert not re.search(r"^ENV FLEX_TEMPLATE_PYTHON_(SETUP|REQUIREMENTS)_FILE", dockerfile, re.M)
    assert '"/opt/apache/beam/boot"' in dockerfile
    for copied in ("pipeline", "transforms", "adapters", "setup.py", "templates/main.py", "templates/secrets_env.py"):
        assert copied in dockerfile
        assert (REPO / copied).exists()


# --- the launcher ----------------------------------------------------------------------------


def test_launcher_builds_for_dataflow_unless_told_otherwise():
    launcher = _load("main")
    assert launcher.launcher_argv(["--output=gs://b/o"])[-1] == "--runner=DataflowRunner"
    assert launcher.launcher_argv(["--runner=DataflowRunner", "--x=1"]).count("--runner=DataflowRunner") == 1
    assert "--runner=DataflowRunner" not in launcher.launcher_argv(["--runner", "FnApiRunner"])


def test_dataflow_run_returns_after_submitting_without_waiting(monkeypatch, tmp_path):
    submitted = []

    class _Submitted:
        def wait_until_finish(self, duration=None):
            raise AssertionError("the launcher waited for the job")

    def fake_run(pipeline, *args, **kwargs):
        submitted.append(pipeline.options.get_all_options()["runner"])
        return _Submitted()

    monkeypatch.setattr(beam.Pipeline, "run", fake_run)
    monkeypatch.delenv("SQLPAIRS_WAIT", raising=False)
    status = sqlpairs_main.run([
        "--sql_logs", str(REPO / "examples" / "chinook_queries.sql"), "--output", "gs://sqlpairs-test/out/pairs",
        "--runner", "DataflowRunner", "--project", "sqlpairs-test", "--region", "us-central1",
        "--temp_location", "gs://sqlpairs-test/tmp", "--no_auth", "--dry_run=True",
    ])
    assert status == 0
    assert submitted == ["DataflowRunner"]


def test_the_launcher_file_builds_a_dataflow_job_and_exits(tmp_path):
    """What the Flex Template launcher does: ``python main.py <parameters> <Beam options>``
    (a dry run here: the job is built for DataflowRunner, nothing is submitted)."""
    try:
        from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("DataflowRunner needs apache-beam[gcp]")
        pytest.skip("DataflowRunner needs apache-beam[gcp]")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("SQLPAIRS_WAIT", None)
    completed = subprocess.run(
        [sys.executable, str(TEMPLATES / "main.py"), f"--sql_logs={REPO / 'examples' / 'chinook_queries.sql'}",
         "--output=gs://sqlpairs-test/out/pairs", "--project=sqlpairs-test", "--region=us-central1",
         "--temp_location=gs://sqlpairs-test/tmp", "--no_auth", "--dry_run=True"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


# --- secrets --------------------------------------------------------------------------------


def test_secrets_are_read_by_resource_name_into_unset_variables_only():
    secrets_env = _load("secrets_env")
    environ = {
        "SQLPAIRS_SECRETS": "DB_PASSWORD=projects/p/secrets/db/versions/latest, LLM_KEY=projects/p/secrets/k/versions/2",
        "LLM_KEY": "already-set",
    }
    asked = []

    def read(version):
        asked.append(version)
        return "s3cr3t"

    assert secrets_env.load(environ, read) == ["DB_PASSWORD"]
    assert environ["DB_PASSWORD"] == "s3cr3t" and environ["LLM_KEY"] == "already-set"
    assert asked == ["projects/p/secrets/db/versions/latest"]


@pytest.mark.parametrize("spec", ["DB_PASSWORD=hunter2", "not a pair", "1X=projects/p/secrets/s/versions/1"])
def test_a_malformed_secret_spec_is_refused_without_echoing_values(spec):
    secrets_env = _load("secrets_env")
    with pytest.raises(secrets_env.SecretsError) as raised:
        secrets_env.load({"SQLPAIRS_SECRETS": spec}, lambda version: "unused")
    assert "SQLPAIRS_SECRETS" in str(raised.value)
    assert "hunter2" not in str(raised.value) and "not a pair" not in str(raised.value)


def test_a_secret_that_cannot_be_read_names_the_variable_not_the_cause_text():
    secrets_env = _load("secrets_env")

    def read(version):
        raise PermissionError("403 caller lacks secretmanager.versions.access; token=abc")

    with pytest.raises(secrets_env.SecretsError) as raised:
        secrets_env.load({"SQLPAIRS_SECRETS": "DB_PASSWORD=projects/p/secrets/db/versions/1"}, read)
    message = str(raised.value)
    assert "DB_PASSWORD" in message and "projects/p/secrets/db/versions/1" in message
    assert "token=abc" not in message


# --- the versions a run used -----------------------------------------------------------------


def test_report_records_the_beam_and_sqlglot_of_the_launcher_and_of_the_workers(tmp_path):
    out = tmp_path / "v"
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"question": "How many artists?", "sql": "SELECT COUNT(*) FROM artist"}\n', encoding="utf-8")
    assert sqlpairs_main.main(["run", "--seed_pairs", str(seeds), "--output", str(out), "--html_report=false"]) == 0
    report = json.loads((tmp_path / "v-report.json").read_text(encoding="utf-8"))
    here = {"apache-beam": beam.__version__, "sqlglot": importlib.metadata.version("sqlglot")}
    for side in ("launcher", "workers"):  # one process here: both are this environment
        versions = report["versions"][side]
        assert {name: versions[name] for name in here} == here
        assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
