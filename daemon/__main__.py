"""`python -m db0.daemon run`: how the CLI starts the daemon in the background."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] != ["run"]:
        print("usage: python -m db0.daemon run", file=sys.stderr)
        return 2
    from db0.daemon.core.server import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
