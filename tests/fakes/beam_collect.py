"""Run a test pipeline and get back what its PCollections held, through files read after the run.

A ``beam.Map`` that appends to a module-level list only works when the runner executes the
DoFns in the test's own process (FnApiRunner does, by accident of its design); on a runner
with worker processes the list stays empty in the test and the assertions check nothing.
Here every element is pickled to a line of a text file by Beam's own ``WriteToText`` and read
back once the pipeline has finished, which holds for any runner whose workers share this
machine's disk.
"""

from __future__ import annotations

import base64
import pathlib
import pickle
import tempfile
from typing import Any

import apache_beam as beam


def _encode(element: Any) -> str:
    """One element as one line (base64 has no newline in it).

    >>> _decode(_encode({"a": (1, "x")}))
    {'a': (1, 'x')}
    """
    return base64.b64encode(pickle.dumps(element)).decode("ascii")


def _decode(line: str) -> Any:
    return pickle.loads(base64.b64decode(line))


def _read(prefix: pathlib.Path) -> list:
    """Every element the shards under ``prefix`` hold, shard by shard."""
    return [_decode(line) for path in sorted(prefix.parent.glob(f"{prefix.name}-*"))
            for line in path.read_text(encoding="ascii").splitlines() if line]


def collect(pipeline: beam.Pipeline, **pcolls: beam.PCollection) -> dict[str, Any]:
    """Run ``pipeline`` and return ``{name: [elements]}`` for each named PCollection (in no set order),
    plus ``"_result"``: the PipelineResult (for its metrics)."""
    with tempfile.TemporaryDirectory(prefix="sqlpairs-collect-") as folder:
        prefixes = {name: pathlib.Path(folder) / name for name in pcolls}
        for name, pcoll in pcolls.items():
            (pcoll
             | f"Encode_{name}" >> beam.Map(_encode)
             | f"Write_{name}" >> beam.io.WriteToText(str(prefixes[name])))
        result = pipeline.run()
        result.wait_until_finish()
        found: dict[str, Any] = {name: _read(prefix) for name, prefix in prefixes.items()}
    found["_result"] = result
    return found
