"""Benchmark: how long a Basic-auth check takes for an unknown user vs a known user with a wrong password.

A ratio near 1.0 means the answer time does not tell an attacker which user names exist.

Run: python bench/registry_auth.py [--cost N] [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def per_check(check, user: str, rounds: int) -> float:
    """Seconds per failed check of `user`, best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(rounds):
            check(user, f"wrong-{i}")
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", type=int, default=10, help="bcrypt cost of the users' hashes (default 10)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    htpasswd = shutil.which("htpasswd")
    if not htpasswd:
        sys.exit("htpasswd is not installed (apache2-utils)")
    # bench/registry.py would shadow the registry package for a script run from this directory.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    from registry.auth.htpasswd import Htpasswd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "htpasswd"
        path.write_text(subprocess.run([htpasswd, "-Bbn", "-C", str(args.cost), "alice", "secret"], check=True,
                                       capture_output=True, text=True).stdout)
        table = Htpasswd(str(path))
        known = per_check(table.check, "alice", args.rounds)
        unknown = per_check(table.check, "nobody", args.rounds)
    print(f"cost {args.cost}: known user {known * 1000:.2f} ms, unknown user {unknown * 1000:.2f} ms, "
          f"ratio unknown/known {unknown / known:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
