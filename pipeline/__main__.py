"""``python -m pipeline run ...`` — the same as the ``sqlpairs`` console script."""

from pipeline.main import cli

cli()
