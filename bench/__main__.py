"""python -m bench [storage|intake|latency|polling|memory|team|isolation|all] [--quick]"""

from __future__ import annotations

import argparse
import datetime
import importlib

from bench.common import env_summary, workdir

NAMES = ("storage", "intake", "latency", "polling", "memory", "team", "isolation")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", default=["all"], help=f"any of {', '.join(NAMES)}, or all"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args()
    names = NAMES if "all" in args.names else args.names
    print(f"resell-scan-bot benchmarks, {datetime.date.today()}, {env_summary()}\n")
    for name in names:
        module = importlib.import_module(f"bench.{name}_bench")
        with workdir() as tmp:
            module.main(tmp, args.quick)
        print()


if __name__ == "__main__":
    main()
