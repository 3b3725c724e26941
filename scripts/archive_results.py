"""Archive the raw per-run results behind a published table: each finished job's results.json, gzipped.

    python scripts/archive_results.py SWEEP_DIR [SWEEP_DIR ...] --out docs/results/EXPERIMENT [--seeds 0 1]

Writes OUT/<job directory name>/results.json.gz for every complete job of the sweeps (failed or
unfinished jobs are named and left out), byte-for-byte the run's own file, compressed
reproducibly (no timestamp in the gzip header). OUT may already hold an archive: a later sweep's
runs (the rows a first sweep did not reach) are added beside it. A job already archived with the same
results is left as it is, so the same command run again once a sweep has finished adds only its new runs;
one archived with other results is an error, and nothing is written. The archive reads like a sweep directory: every
reader of runs (scripts/summarize.py, scripts/formal_table.py, nested_learning.analysis.summary.load_sweep)
takes it in place of SWEEP_DIR, so the docs' tables are rebuilt from it by their own command, and
tests/test_results_archive.py checks that they are.
"""
from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

from nested_learning.errors import UserError
from nested_learning.analysis.results import ARCHIVED_FILE, RESULTS_FILE, load_results


def archive(sweep_dirs: list[Path], out: Path, seeds: list[int] | None = None) -> tuple[list[str], list[str], list[str]]:
    """Copy every complete job's results.json into out (only the given seeds' jobs, if seeds);
    returns (archived job names, skipped 'job: why', job names already archived with the same results)."""
    jobs: dict[str, Path] = {}
    skipped, unchanged = [], []
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise UserError(f"{sweep_dir}: not a directory; give multirun directories (outputs/multiruns/...)")
        for job in sorted(p for p in sweep_dir.iterdir() if (p / RESULTS_FILE).is_file()):
            result = load_results(job)
            status = result.get("status")
            if seeds is not None and result.get("seed") not in seeds:
                continue
            if status != "complete":
                skipped.append(f"{job}: status {status}")
            elif job.name in jobs:
                raise UserError(f"{job.name}: in both {jobs[job.name].parent} and {sweep_dir}; archive one of them")
            elif (out / job.name).exists():
                archived = out / job.name / ARCHIVED_FILE
                if not archived.is_file() or gzip.decompress(archived.read_bytes()) != (job / RESULTS_FILE).read_bytes():
                    raise UserError(f"{job.name}: already archived in {out} with other results; remove it there to archive it again")
                unchanged.append(job.name)
            else:
                jobs[job.name] = job
    if not jobs and not unchanged:
        raise UserError(f"{', '.join(map(str, sweep_dirs))}: no complete job (with {RESULTS_FILE}) to archive")
    for name, job in jobs.items():
        (out / name).mkdir(parents=True)
        (out / name / ARCHIVED_FILE).write_bytes(gzip.compress((job / RESULTS_FILE).read_bytes(), mtime=0))
    return sorted(jobs), skipped, unchanged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", type=Path, nargs="+", help="multirun directories whose jobs the table reads")
    parser.add_argument("--out", type=Path, required=True, help="the archive directory, e.g. docs/results/formal_languages (new, or one to add runs to)")
    parser.add_argument("--seeds", type=int, nargs="+", help="archive only these seeds' jobs, e.g. the whole seeds of a sweep "
                        "still running (seeds are outermost in the experiments' sweeps); later seeds are added by a later call")
    args = parser.parse_args()
    try:
        archived, skipped, unchanged = archive(args.sweep_dirs, args.out, args.seeds)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"left out {line}", file=sys.stderr)
    size = sum(p.stat().st_size for p in args.out.rglob(ARCHIVED_FILE))
    kept = f"; {len(unchanged)} already there with the same results" if unchanged else ""
    print(f"archived {len(archived)} runs in {args.out} ({size / 1024:.0f} KiB{kept})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
