"""Long runs of the revocation differential: mtlscore against ``openssl verify`` on random PKIs with CRLs.

    python fuzz/revocation_diff.py [--seeds N] [--start S] [--all]

Generates cases ``S .. S+N-1`` with tests/revocation_gen.py, prints the verdict
classes, and the disagreements by category: those the test's allow-list covers
(deliberate differences, known bugs) and the unexplained ones, with one seed
each (``--all``: every seed). Exit status 1 when an unexplained disagreement
is found. Reproduce a seed with ``revocation_gen.generate(seed)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from test_revocation_differential import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2000, help="how many cases (default 2000)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--all", action="store_true", help="list every disagreeing seed, not one per category")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    report = run(range(args.start, args.start + args.seeds))
    classes, disagreements = report.classes, report.disagreements
    by: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for case, o, m, allowed in disagreements:
        label = "UNEXPLAINED" if allowed is None else allowed.why
        by[(label, case.category, o.cls, m.cls)].append(case.seed)
    print(f"{args.seeds} cases from seed {args.start} in {time.perf_counter() - t0:.1f} s; "
          f"openssl verdicts {dict(classes)}; {len(disagreements)} disagreements")
    per_label: Counter[str] = Counter()
    for (label, category, o, m), seeds in sorted(by.items()):
        per_label[label] += len(seeds)
        shown = seeds if args.all else seeds[:1]
        print(f"  {len(seeds):4d}  {category:<55} openssl={o:<11} mtlscore={m:<11} {label}  seeds {shown}")
    for label, n in sorted(per_label.items()):
        print(f"total {n:5d}  {label}")
    return 1 if per_label["UNEXPLAINED"] else 0


if __name__ == "__main__":
    sys.exit(main())
