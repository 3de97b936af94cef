"""`python -m db0.daemon run`: how the CLI starts the daemon in the background."""

from __future__ import annotations

import os
import sys

# NumPy's BLAS starts a thread per core for a matrix-vector product, and its threads spin while
# they wait: on shared cores a search's product of a partition then takes both cores and runs
# slower than on one. A recall uses one core (llama.cpp's contexts are sized the same way). Set
# before anything loads NumPy; a value the user exported wins.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def main() -> int:
    if sys.argv[1:] != ["run"]:
        print("usage: python -m db0.daemon run", file=sys.stderr)
        return 2
    for var in BLAS_THREADS:
        os.environ.setdefault(var, "1")
    from db0.daemon.core.server import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
