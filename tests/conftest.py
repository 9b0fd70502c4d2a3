"""Shared test fixtures: pipelines that never try to download Prism, and paths to shared data."""

from __future__ import annotations

import os
import pathlib

import pytest
from apache_beam.testing.test_pipeline import TestPipeline

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
#: The tests' own data (formats fixtures, golden questions), wherever a test module sits below tests/.
TEST_DATA = REPO / "tests" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def make_pipeline() -> TestPipeline:
    """A TestPipeline on Beam's in-process FnApiRunner (the DirectRunner would try to fetch Prism)."""
    return TestPipeline(runner="FnApiRunner")


def require_shared_data(*parts: str) -> pathlib.Path:
    """The path under ../shared/data, or a skip (a failure in CI, where it must be present)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"{path} is absent: ../shared/data comes with the developers' checkout, not a user's clone"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data():
    return require_shared_data


@pytest.fixture
def sorter_spills(monkeypatch) -> list[int]:
    """Counts ``ExternalSorter`` spills to disk (the size of each run) during a test."""
    import transforms.kit.write as write

    spills: list[int] = []
    real_spill = write.ExternalSorter._spill

    def counting_spill(self) -> None:
        spills.append(len(self._held))
        real_spill(self)

    monkeypatch.setattr(write.ExternalSorter, "_spill", counting_spill)
    return spills


@pytest.fixture
def executor_factory():
    """Executors built by a test (``open_executor(url, **settings)``), closed after it."""
    from adapters.db import open_executor

    built = []

    def build(url: str, **settings):
        executor = open_executor(url, **settings)
        built.append(executor)
        return executor

    yield build
    for executor in built:
        executor.close()
