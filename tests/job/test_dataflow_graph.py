"""The full Dataflow job, built offline: every stage is in the job graph, every function in it
unpickles in a fresh process (as on a worker), and setup.py packages the job for --setup_file.

``--dry_run=True`` (Beam's TestOptions) makes ``DataflowRunner.run`` build the whole job
— overrides, the portable pipeline proto, the Dataflow ``Job`` — and return before
anything is staged or submitted; ``--dataflow_job_file`` is written only by the
submit path, after staging. So the test does what that path does, minus the
submit, with a local staging directory: ``create_job_description`` builds the
``setup.py`` sdist and stages it, the pickled main session and ``pipeline.pb``, and
the job JSON is written to the ``--dataflow_job_file`` path. ``--no_auth`` skips the
credential lookup; nothing touches the network.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions

from pipeline.graph import build
from pipeline.arguments import options_parser
from pipeline.config import resolve
from tests.conftest import IN_CI, REPO

try:
    from apache_beam.runners.dataflow.internal import apiclient
except ImportError:  # apache-beam without the [gcp] extra
    apiclient = None

#: Top-level steps the job must always have (Read_<kind> per input kind).
STAGES = ("ValidatePairs", "ValidatePairs/NormalizeSql", "ValidatePairs/ClassifyDifficulty", "DescribeQuestions",
          "ValidatePairs/ExecuteQueries", "ValidatePairs/FilterPairs", "DedupPairs", "WritePairs", "WriteDeadLetters",
          "Report")
EXAMPLES = REPO / "examples"

_UNPICKLE_EVERYTHING = r"""
import json, sys
from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2

proto = beam_runner_api_pb2.Pipeline.FromString(open(sys.argv[1], "rb").read())
done, failed = [], []
for transform_id, transform in sorted(proto.components.transforms.items()):
    urn, payload = transform.spec.urn, None
    if urn == common_urns.primitives.PAR_DO.urn:
        function = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
    elif urn in (common_urns.composites.COMBINE_PER_KEY.urn, common_urns.composites.COMBINE_GLOBALLY.urn):
        function = beam_runner_api_pb2.CombinePayload.FromString(transform.spec.payload).combine_fn
    else:
        continue
    if function.urn not in (python_urns.PICKLED_DOFN_INFO, python_urns.PICKLED_COMBINE_FN):
        continue
    try:
        pickler.loads(function.payload)
        done.append(transform.unique_name)
    except Exception as error:
        failed.append(f"{transform.unique_name}: {type(error).__name__}: {error}")
print(json.dumps({"done": done, "failed": failed}))
"""


def _require_gcp():
    if apiclient is None:
        message = "DataflowRunner needs apache-beam[gcp] (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _functions(pipeline: beam.Pipeline) -> dict[str, object]:
    """Every DoFn and CombineFn of the user-visible graph, by full label."""
    found: dict[str, object] = {}

    class _Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            transform = node.transform
            if isinstance(transform, beam.ParDo):
                found[node.full_label] = transform.fn
            elif isinstance(transform, beam.CombinePerKey) or isinstance(transform, beam.CombineGlobally):
                found[node.full_label] = transform.fn

        def enter_composite_transform(self, node):
            self.visit_transform(node)

    pipeline.visit(_Visitor())
    return found


def _top_level_labels(pipeline: beam.Pipeline) -> list[str]:
    return [part.full_label for part in pipeline.transforms_stack[0].parts]


@pytest.fixture(scope="module")
def dataflow_job(tmp_path_factory):
    """The job for the bundled examples, built for Dataflow offline."""
    _require_gcp()
    tmp = tmp_path_factory.mktemp("dataflow")
    staging = tmp / "staging"
    staging.mkdir()
    job_file = tmp / "job.json"
    values, _ = options_parser("sqlpairs run").parse_known_args([
        "--sql_logs", str(EXAMPLES / "chinook_queries.sql"),
        "--chat_history", str(EXAMPLES / "chat_history.json"),
        "--seed_pairs", str(EXAMPLES / "seed_pairs.jsonl"),
        "--database", f"sqlite:///{EXAMPLES / 'chinook.sqlite'}",
        "--output", "gs://sqlpairs-test/out/pairs",
    ])
    config = resolve(values)
    options = PipelineOptions([
        "--runner=DataflowRunner", "--project=sqlpairs-test", "--region=us-central1",
        "--temp_location=gs://sqlpairs-test/tmp", f"--staging_location={staging}", "--no_auth",
        "--dry_run=True", f"--dataflow_job_file={job_file}", f"--setup_file={REPO / 'setup.py'}",
        "--sdk_location=container", "--job_name=sqlpairs-offline",
    ])
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config)
    labels = _top_level_labels(pipeline)
    functions = _functions(pipeline)
    result = pipeline.run()  # dry run: builds the Job, stages and submits nothing
    job = result.job

    # What DataflowApplicationClient.create_job does before it submits, staged locally.
    job.google_cloud_options.staging_location = str(staging)
    client = apiclient.DataflowApplicationClient(job.options)
    client.create_job_description(job)
    path = job.options.view_as(DebugOptions).dataflow_job_file
    client.stage_file(os.path.dirname(path), os.path.basename(path), io.BytesIO(job.json().encode("utf-8")))
    return {"job_file": job_file, "staging": staging, "labels": labels, "functions": functions, "job": job}


def _staged_pipeline(dataflow_job):
    from apache_beam.portability.api import beam_runner_api_pb2

    return beam_runner_api_pb2.Pipeline.FromString((dataflow_job["staging"] / "pipeline.pb").read_bytes())


def test_job_file_describes_a_batch_job_on_the_staged_graph_and_package(dataflow_job):
    job = json.loads(dataflow_job["job_file"].read_text(encoding="utf-8"))
    assert job["name"] == "sqlpairs-offline"
    assert job["type"] == "JOB_TYPE_BATCH"
    packages = {p["name"]: p["location"] for pool in job["environment"]["workerPools"] for p in pool["packages"]}
    assert "workflow.tar.gz" in packages  # the --setup_file sdist, installed on every worker
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert options["project"] == "sqlpairs-test" and options["region"] == "us-central1"
    assert options["setup_file"].endswith("setup.py")


def test_every_stage_is_in_the_job_graph(dataflow_job):
    names = {t.unique_name for t in _staged_pipeline(dataflow_job).components.transforms.values()}
    for stage in STAGES:
        assert stage in names, f"{stage} missing from the Dataflow job graph"
    for kind in ("sql_logs", "chat_history", "seed_pairs"):
        assert f"Read_{kind}" in names
    assert set(dataflow_job["labels"]) <= names, "a top-level step of the pipeline is not in the job graph"


def test_dedup_reaches_dataflow_as_a_liftable_combine(dataflow_job):
    from apache_beam.portability import common_urns

    transforms = _staged_pipeline(dataflow_job).components.transforms.values()
    combines = {t.unique_name for t in transforms if t.spec.urn == common_urns.composites.COMBINE_PER_KEY.urn}
    assert "DedupPairs/ChooseRepresentative" in combines


def test_every_function_pickles_and_unpickles(dataflow_job):
    functions = dataflow_job["functions"]
    assert len(functions) >= len(STAGES)
    for label, function in functions.items():
        clone = pickler.loads(pickler.dumps(function))
        assert type(clone) is type(function), label


def test_every_function_in_the_staged_graph_unpickles_in_a_fresh_process(dataflow_job):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run(
        [sys.executable, "-c", _UNPICKLE_EVERYTHING, str(dataflow_job["staging"] / "pipeline.pb")],
        capture_output=True, text=True, env=env, cwd=dataflow_job["staging"], timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["failed"] == []
    unpickled = set(outcome["done"])
    for stage in ("ValidatePairs/NormalizeSql/Normalize", "ValidatePairs/ExecuteQueries/RunQueries",
                  "DedupPairs/ChooseRepresentative"):
        assert any(name.startswith(stage) for name in unpickled), f"no function of {stage} was unpickled"


def test_setup_py_packages_every_module_for_the_workers(dataflow_job):
    with tarfile.open(dataflow_job["staging"] / "workflow.tar.gz") as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for package in ("pipeline", "transforms", "transforms/formats", "adapters", "adapters/db", "adapters/llm"):
        modules = {p.relative_to(REPO).as_posix() for p in (REPO / package).glob("*.py")}
        assert modules and modules <= names, f"{package}: {sorted(modules - names)} missing from the sdist"
    prompts = {p.relative_to(REPO).as_posix() for p in (REPO / "adapters" / "llm" / "prompts").glob("*") if p.is_file()}
    assert prompts <= names, f"prompt files missing from the sdist: {sorted(prompts - names)}"


def test_the_job_uses_the_beam_sdk_image_of_this_version(dataflow_job):
    job = json.loads(dataflow_job["job_file"].read_text(encoding="utf-8"))
    images = {pool.get("workerHarnessContainerImage") for pool in job["environment"]["workerPools"]}
    assert any(image and image.endswith(f"beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:"
                                         f"{beam.__version__}") for image in images), images
