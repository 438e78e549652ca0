"""Run the benchmarks and merge their sections into build/bench.json.

Each ``tests/bench/bench_<name>.py`` exposes ``run(quick: bool = False) -> dict``; its result is stored
under ``<name>``.  Sections not run this time are kept from the previous file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUTPUT = Path("build/bench.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    available = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available}")
    report: dict = json.loads(args.output.read_text()) if args.output.exists() else {}
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"tests.bench.bench_{name}")
            section = module.run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        section["seconds"] = round(time.monotonic() - started, 1)
        section["quick"] = args.quick
        report[name] = section
        print(json.dumps(section, indent=2, default=str), flush=True)
    report["_meta"] = {
        "written_at": datetime.now(UTC).isoformat(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
