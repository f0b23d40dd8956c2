"""Run every notebook in order with papermill into a new runs/<timestamp>/ folder; print a summary table.

Usage: python scripts/run_course.py [--profile full|ci] [--only 01,02]
"""

from __future__ import annotations

import argparse
import sys

from helpers import course


def main() -> int:
    """Parse arguments, run the notebooks, print the table; non-zero exit on the first failure."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="full", help="parameter profile from notebooks/profiles.json")
    ap.add_argument("--only", default="", help="comma-separated notebook prefixes, e.g. 01,02")
    args = ap.parse_args()
    params = course.profile(args.profile)
    wanted = [p for p in args.only.split(",") if p]
    course_dir = course.new_course_dir(args.profile)
    print(f"course run folder: {course_dir}")
    status = 0
    for nb in course.notebooks():
        if wanted and not any(nb.name.startswith(p) for p in wanted):
            continue
        print(f"-> {nb.name} ...", flush=True)
        try:
            print(f"   done in {course.execute(nb, course_dir, params.get(nb.stem, {})):.0f} s", flush=True)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(f"   FAILED: {str(exc)[:2000]}", flush=True)
            status = 1
            break
    print(course.summary(course_dir))
    return status


if __name__ == "__main__":
    sys.exit(main())
