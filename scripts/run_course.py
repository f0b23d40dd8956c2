"""Run the course's notebooks in order with papermill into one runs/<timestamp>-<profile>/ folder;
print a summary.

Usage: python scripts/run_course.py [--profile full|ci|ablation|smoke|t4|rtx4090] [--only 01,02]
[--from 06 [--run-dir runs/...]]

--from resumes a course: it reruns that notebook and the ones after it inside an earlier run folder
(the newest one of the same profile unless --run-dir names one), so they find the earlier notebooks'
artifacts where they left them. t4 and rtx4090 are the GPU profiles (hub models, Unsloth 4-bit):
written down for Colab and a 4090, never run here; without CUDA they stop at once with one line.
smoke runs every arm of the ablation profile at CI's sizes (helpers.course.smoke_profile).
"""

from __future__ import annotations

import argparse
import sys

from helpers import course


def main() -> int:
    """Parse arguments, run the notebooks, print the table; 2 on a bad choice, 1 on the first
    failing notebook."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--profile", default="full", help="parameter profile from notebooks/profiles.json"
    )
    ap.add_argument("--only", default="", help="comma-separated notebook prefixes, e.g. 01,02")
    ap.add_argument(
        "--from", dest="start", default="", help="resume from this notebook prefix, e.g. 06"
    )
    ap.add_argument(
        "--run-dir",
        default="",
        help="with --from: the course run folder to resume (default: the newest)",
    )
    args = ap.parse_args()
    try:
        params = course.profile(args.profile)
        if course.hub_models(args.profile):  # only a GPU profile pays for importing torch
            import torch

            course.check_runnable(args.profile, torch.cuda.is_available())
        nbs = course.select(args.only, args.start)
        if args.run_dir and not args.start:
            raise course.CourseError(
                "--run-dir only goes with --from (a new course gets a new folder)"
            )
        if args.start:
            course_dir = course.resume_dir(args.run_dir, args.profile)
        else:
            course_dir = course.new_course_dir(args.profile)
    except course.CourseError as err:
        print(f"run_course: {err}", file=sys.stderr)
        return 2
    if args.start:
        moved = course.set_aside(course_dir, nbs)
        print(
            f"resuming {course_dir} from notebook {args.start}"
            + (f" ({len(moved)} earlier outputs renamed *.before-resume)" if moved else "")
        )
    else:
        print(f"course run folder: {course_dir}")
    status = 0
    for i, nb in enumerate(nbs, 1):
        print(f"[{i}/{len(nbs)}] {nb.name} (profile {args.profile}) ...", flush=True)
        try:
            seconds = course.execute(nb, course_dir, params.get(nb.stem, {}), progress=True)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(
                "\n".join("   " + line for line in course.failure_lines(exc, course_dir / nb.name)),
                flush=True,
            )
            print(
                f"   fix it, then continue with: make course PROFILE={args.profile} "
                f"FROM={nb.name[:2]}",
                flush=True,
            )
            status = 1
            break
        print(
            f"   done in {seconds / 60:.1f} min | "
            f"{course.headline(nb.stem, course.read_metrics(course_dir, nb))}",
            flush=True,
        )
    print(course.summary(course_dir, nbs))
    return status


if __name__ == "__main__":
    sys.exit(main())
