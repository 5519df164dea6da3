"""``python -m bench`` (list) / ``python -m bench NAME [--repeat N]`` (run one)."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.common import BENCHMARKS, report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("name", nargs="?", help="benchmark to run; none = list them")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    args = p.parse_args(argv)
    if not args.name:
        width = max(len(n) for n in BENCHMARKS)
        for name, (_, doc) in sorted(BENCHMARKS.items()):
            print(f"{name:<{width}}  {doc}")
        return 0
    if args.name not in BENCHMARKS:
        print(f"unknown benchmark {args.name!r}; known: {', '.join(sorted(BENCHMARKS))}",
              file=sys.stderr)
        return 2
    if args.repeat < 1:
        print("--repeat must be >= 1", file=sys.stderr)
        return 2
    module, _ = BENCHMARKS[args.name]
    rows = importlib.import_module(module).run(repeat=args.repeat)
    report(args.name, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
