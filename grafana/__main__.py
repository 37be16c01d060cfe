"""`python -m grafana [--check]`: write (or check) every file generated from the code in grafana/."""

from __future__ import annotations

import argparse
import sys

from grafana import generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report generated files that are out of date")
    args = parser.parse_args(argv)
    stale = generated.stale()
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run `make dashboards`", file=sys.stderr)
        return 1 if stale else 0
    for path in generated.write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
