"""``python -m pipeline run ...`` — the same as the ``sqlpairs`` console script."""

import sys

from pipeline.main import main

sys.exit(main())
