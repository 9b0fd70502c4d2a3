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
    package_data={"adapters.llm": ["prompts/*"], "transforms": ["prompts/*"]},
    include_package_data=True,
    install_requires=[
        "apache-beam>=2.77,<3",
        "sqlglot[c]>=30",
        "pyarrow>=14",
        "psycopg[binary]>=3.2",
        "psycopg_pool>=3.2",
        "duckdb>=1.1",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6"],
        "gcp": ["apache-beam[gcp]>=2.77,<3"],
    },
    entry_points={"console_scripts": ["sqlpairs=pipeline.main:main"]},
)
