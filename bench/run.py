"""make bench: run the benchmarks, print one table, write bench/results/<name>.json.

python -m bench.run [--quick] [name ...]   (names: see ALL)
Each figure stands beside its baseline or floor, measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import sys
import time
from typing import Any

from bench.common import ROOT, Result, git_commit, load_average, machine, pg_server

ALL = ("latency", "recovery", "sweep", "triggers", "idle", "memory", "authority", "pgnet", "profile")


def table(results: list[Result]) -> str:
    rows = [("benchmark", "figure", "value", "baseline / floor (same run)", "goal", "")]
    for r in results:
        for row in r.rows:
            rows.append((r.name, row.name, row.value, row.baseline, row.goal,
                         "" if row.met is None else ("met" if row.met else "MISSED")))
    widths = [max(len(str(line[i])) for line in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


async def main(names: list[str], quick: bool) -> int:
    results = []
    with pg_server() as admin_url:
        for name in names:
            module = importlib.import_module(f"bench.bench_{name}")
            print(f"== {name}{' (quick)' if quick else ''}", file=sys.stderr, flush=True)
            started, load_before = time.monotonic(), load_average()
            result: Result = await module.run(admin_url, quick)
            elapsed = time.monotonic() - started
            results.append(result)
            out: dict[str, Any] = {
                "name": name, "quick": quick, "seconds": round(elapsed, 1), "commit": git_commit(),
                "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": machine(),
                "load_average": {"before": load_before, "after": load_average()},
                "rows": [row.__dict__ for row in result.rows], "data": result.data,
            }
            (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(out, indent=1, default=str))
            print(table([result]), file=sys.stderr, flush=True)
            print(f"   load average before / after: {load_before} / {load_average()}", file=sys.stderr, flush=True)
    print(table(results))
    print(f"load average (1, 5, 15 min) at the end: {load_average()}; {machine()['cores']} cores")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter runs and smaller tables")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {' '.join(ALL)} (default: all)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}")
    raise SystemExit(asyncio.run(main(args.names or list(ALL), args.quick)))
