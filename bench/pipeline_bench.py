"""``python -m bench.pipeline_bench``: the pipeline bench from a source checkout.

The harness is ``station/bench.py`` (installed with the package, so ``station bench`` works
anywhere); this script is the same thing for those who run benches from ``bench/``.
"""

from __future__ import annotations

import sys

from station.bench_cli import main

if __name__ == "__main__":
    sys.exit(main())
