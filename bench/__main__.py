"""`python -m bench`: run every benchmark and rewrite docs/performance.md.

python -m bench                 the full run (15 to 30 minutes on 2 cores)
python -m bench --quick         small sizes, to check the benchmarks themselves
python -m bench --only trigger,batch
python -m bench --only trigger,e2e-api --write-docs   replace only those keys' figures in docs/performance.md
python -m bench --only logs --size medium    quick, medium or full sizes (bench/context.py)
python -m bench --render        the last run's figures again, with bench/findings.py as it is now
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
# Benchmarks keep their own embedded PostgreSQL and Redis, apart from `make run`'s and the tests'.
os.environ.setdefault("RUNYARD_VAR", str(BASE_DIR / "var" / "bench"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; does not write docs/performance.md")
    parser.add_argument(
        "--only", default="", help="comma-separated keys; writes docs/performance.md only with --write-docs"
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="with --only: replace those keys' rows and sections of docs/performance.md, keep the others",
    )
    parser.add_argument("--size", choices=["quick", "medium", "full"], help="sizes (default full; --quick: quick)")
    parser.add_argument("--out", type=Path, help="write the report here (default: docs/performance.md on a full run)")
    parser.add_argument("--memory", type=int, help="runs and requests of the memory benchmark (default 10,000)")
    parser.add_argument(
        "--render", action="store_true", help="write the last run's report again (after editing bench/findings.py)"
    )
    args = parser.parse_args(argv)

    import django

    django.setup()
    from bench import runner
    from bench.context import FULL, MEDIUM, QUICK

    keys = [key.strip() for key in args.only.split(",") if key.strip()] or list(runner.BENCHMARKS)
    unknown = sorted(set(keys) - set(runner.BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(runner.BENCHMARKS)}")
    out = args.out
    if out is None and not args.quick and not args.only:
        out = BASE_DIR / "docs" / "performance.md"
    if args.write_docs and not args.only:
        parser.error("--write-docs goes with --only (a full run rewrites docs/performance.md anyway)")
    docs = BASE_DIR / "docs" / "performance.md"
    if args.render:
        target = out or docs
        # The last run of some keys only (--only) replaces just those in an existing page.
        partial = runner.last_keys() < set(runner.BENCHMARKS) and target.exists()
        target.write_text(runner.merge_last(target.read_text()) if partial else runner.render_last())
        return 0
    command = "python -m bench" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    command += " --write-docs" if args.write_docs else ""
    started = time.monotonic()
    try:
        sizes = {"quick": QUICK, "medium": MEDIUM, "full": FULL}[args.size or ("quick" if args.quick else "full")]
        command += f" --size {args.size}" if args.size else ""
        if args.memory:
            sizes = dataclasses.replace(sizes, memory_runs=args.memory, memory_requests=args.memory)
            command += f" --memory {args.memory}"
        text, ok = runner.run(keys, sizes, command=command, quick=args.quick or sizes is QUICK)
    except Exception:  # noqa: BLE001 - a broken run is reported and exits non-zero
        traceback.print_exc()
        return 2
    print(text)
    if args.write_docs:
        docs.write_text(runner.merge_last(docs.read_text() if docs.exists() else text))
        print(f"\nreplaced {', '.join(keys)} in {docs}", file=sys.stderr)
    if out is not None:
        out.write_text(text)
        print(f"\nwrote {out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
