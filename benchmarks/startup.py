"""How long ``gankit --help`` and ``gankit list-plugins`` take to start, and which imports
the time goes to.

Each command runs ``--repeat`` times in a fresh interpreter (the installed ``gankit``
script when there is one, else ``python -m gankit``); the best and median wall-clock
times are printed, then the slowest top-level imports of one run under ``python -X
importtime``, and whether numpy, pydantic, rich, torch or tensorflow were imported at all.

    python benchmarks/startup.py [--repeat 7] [--top 12]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["list-plugins"])
WATCHED = ("numpy", "pydantic", "rich", "torch", "tensorflow")


def gankit_command() -> list[str]:
    script = Path(sys.executable).with_name("gankit")
    if script.is_file():
        return [str(script)]
    found = shutil.which("gankit")
    return [found] if found else [sys.executable, "-m", "gankit"]


def wall_times(command: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def import_profile(args: list[str]) -> list[tuple[int, int, str]]:
    """(cumulative microseconds, depth, module) of every import of one run."""
    code = f"import sys; sys.argv = ['gankit', *{args!r}]; from gankit.__main__ import entry; entry()"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((int(cumulative), depth, name.strip()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--top", type=int, default=12, help="how many of the slowest top-level imports to list")
    args = parser.parse_args()
    command = gankit_command()
    print(f"{' '.join(command)}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for extra in COMMANDS:
        times = wall_times(command + extra, args.repeat)
        print(f"  gankit {' '.join(extra):13s} best {min(times):.3f} s, median {statistics.median(times):.3f} s "
              f"over {args.repeat} runs")
    for extra in COMMANDS:
        rows = import_profile(extra)
        loaded = {name.split(".")[0] for _, _, name in rows}
        top = sorted((row for row in rows if row[1] == 1), reverse=True)[:args.top]
        print(f"\ngankit {' '.join(extra)}: {sum(r[0] for r in rows if r[1] == 1) / 1e6:.3f} s of imports; "
              + ", ".join(f"{m} {'yes' if m in loaded else 'no'}" for m in WATCHED))
        for cumulative, _, name in top:
            print(f"  {cumulative / 1e3:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
