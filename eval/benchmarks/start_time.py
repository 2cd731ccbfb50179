"""How fast the command line answers when no model is needed: --help and argument errors.

    python eval/benchmarks/start_time.py [--repeats 5]

Each command runs in a fresh process (best and median of the repeats); for comparison, the same
interpreter importing torch and transformers, which every command did before imports were deferred.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {
    "steerlab --help": ["-m", "steerlab", "--help"],
    "steerlab steer --help": ["-m", "steerlab", "steer", "--help"],
    "steerlab steer x --max-new-tokens 0 (usage error)": ["-m", "steerlab", "steer", "x", "--max-new-tokens", "0"],
    "steerlab stear (unknown command)": ["-m", "steerlab", "stear"],
    "import torch, transformers (the old floor)": ["-c", "import torch, transformers"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = {}
    for name, argv in COMMANDS.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        rows[name] = {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}
        print(f"{name:55s} best {min(times):.2f} s, median {statistics.median(times):.2f} s")
    out = REPO / "eval" / "benchmarks" / "results" / "start_time.json"
    out.write_text(json.dumps({"repeats": args.repeats, "commands": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
