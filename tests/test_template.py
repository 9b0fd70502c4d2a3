"""The Flex Template: metadata.json is our options, the image is setup.py's Beam, the launcher
submits without waiting, and secrets come from Secret Manager by name only."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import apache_beam as beam
import pytest

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


def _setup_beam_floor() -> str:
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    match = re.search(r'"apache-beam>=([0-9.]+)', text)
    assert match, "setup.py must require apache-beam>=X.Y"
    return match.group(1)


def test_dockerfile_uses_the_beam_version_of_setup_py_and_of_this_environment():
    dockerfile = (TEMPLATES / "Dockerfile").read_text(encoding="utf-8")
    arg = re.search(r"^ARG BEAM_VERSION=([0-9.]+)$", dockerfile, re.M).group(1)
    sdk_images = re.findall(r"^FROM apache/beam_python(3\.\d+)_sdk:([0-9.]+)$", dockerfile, re.M)
    assert len(sdk_images) == 1
    python, image_version = sdk_images[0]
    assert image_version == arg == beam.__version__
    floor = _setup_beam_floor()
    assert arg == floor or arg.startswith(floor + "."), f"setup.py requires apache-beam>={floor}, image has {arg}"
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_dockerfile_is_launcher_and_sdk_image_without_launch_time_installs():
    dockerfile = (TEMPLATES / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM gcr\.io/dataflow-templates-base/python3\d*-template-launcher-base|"
                     r"^ARG LAUNCHER_IMAGE=gcr\.io/dataflow-templates-base/python3\d*-template-launcher-base",
                     dockerfile, re.M)
    assert "/opt/google/dataflow/python_template_launcher" in dockerfile
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/templates/main.py" in dockerfile
    # the package is installed in the image: nothing may be pip-installed on the launcher VM
    assert not re.search(r"^ENV FLEX_TEMPLATE_PYTHON_(SETUP|REQUIREMENTS)_FILE", dockerfile, re.M)
    assert re.search(r'pip install --no-cache-dir "\.\[gcp\]"', dockerfile)
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
