"""Measure the math verifier (selfcorrect.tasks.math.grade) and write docs/verifier.md.

    python scripts/verifier_report.py [--out docs/verifier.md] [--runs 3]

(a) gold answers, written as a model would, are accepted; (b) perturbed answers are
rejected; (c) a curated table of equivalent and non-equivalent forms (the same cases
tests/test_math_task.py asserts); (d) grading throughput. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

from selfcorrect.tasks import math as mt
from selfcorrect.tasks.math_data import SHIPPED


@dataclass(frozen=True)
class Case:
    gold: str
    response: str
    expected: bool
    note: str
    limitation: bool = False  # expected is what we want; math-verify (or extraction) does otherwise


def paper(answer: str) -> str:
    return f"Final Answer: The final answer is ${answer}$. I hope it is correct."


CASES = [
    # fractions and decimals
    Case("\\frac{1}{2}", paper("0.5"), True, "decimal for a fraction"),
    Case("0.5", paper("\\frac12"), True, "\\frac12 without braces"),
    Case("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", True, "\\dfrac"),
    Case("\\frac{1}{2}", "\\boxed{1/2}", True, "slash fraction"),
    Case("\\frac{1}{\\sqrt{2}}", "\\boxed{\\frac{\\sqrt{2}}{2}}", True, "rationalised denominator"),
    Case("5", "\\boxed{5.0}", True, "trailing .0"),
    Case("\\frac{1}{3}", "\\boxed{0.3333333}", True, "decimal within 6 places"),
    Case("\\frac{1}{3}", "\\boxed{0.333}", False, "decimal rounded too early"),
    Case("\\pi", "\\boxed{3.14159}", False, "approximation of an exact answer"),
    Case("5", "\\boxed{5.01}", False, "close but wrong"),
    # LaTeX variants
    Case("(1,2)", "\\boxed{\\left( 1, 2 \\right)}", True, "\\left( \\right)"),
    Case("3\\sqrt{2}", "\\boxed{3\\!\\sqrt{2}}", True, "\\! thin space"),
    Case("\\frac{\\sqrt{3}}{2}", "\\boxed{\\frac{\\sqrt3}{2}}", True, "\\sqrt3 without braces"),
    Case("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", True, "unsimplified radical"),
    Case("x^2+2x", "\\boxed{x(x+2)}", True, "factored polynomial"),
    Case("\\pi r^2", "\\boxed{\\pi r^{2}}", True, "braced exponent"),
    Case("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", True, "matrix spacing"),
    Case("90^\\circ", "\\boxed{90}", True, "degrees dropped"),
    Case("90", "\\boxed{90^{\\circ}}", True, "degrees added"),
    Case("52_8", "\\boxed{52}", True, "base subscript omitted"),
    Case("52_8", "\\boxed{52_9}", False, "another base"),
    # units and text around the answer
    Case("5", "\\boxed{5 \\text{ cm}}", True, "\\text unit"),
    Case("12", "\\boxed{12 \\text{ inches}^2}", True, "\\text unit squared"),
    Case("5", paper("\\$5"), True, "escaped dollar sign"),
    Case("18", "The answer is $18.", True, "currency $ with no closing $"),
    Case("32", "The final answer is \\$32.00", True, "dollars and cents"),
    Case("5", "The final answer is 5 dollars.", True, "plain-word unit"),
    Case("12", "The answer is 12 square feet.", True, "plain-word units"),
    Case("5", "\\boxed{x = 5}", True, "x = 5"),
    Case("x=5", "\\boxed{5}", True, "gold written as an equation"),
    Case("3", "\\boxed{three}", True, "number word", limitation=True),
    Case("5", "\\boxed{5xy}", False, "letters that are maths, not units"),
    # percentages
    Case("10\\%", "\\boxed{10}", True, "percent sign dropped"),
    Case("10", "\\boxed{10\\%}", True, "percent sign added"),
    Case("0.1", "\\boxed{10\\%}", True, "percent for a decimal"),
    # sets, lists, intervals, tuples
    Case("-2, 3", "\\boxed{3, -2}", True, "solutions in another order"),
    Case("-2, 3", "\\boxed{3}", False, "one of two solutions"),
    Case("2", "\\boxed{2, 3}", False, "the gold plus an extra answer"),
    Case("2", "\\boxed{2 \\text{ or } 3}", False, "hedged answer"),
    Case("(-\\infty, 0) \\cup (1, \\infty)", "\\boxed{(1,\\infty)\\cup(-\\infty,0)}", True, "union in another order"),
    Case("[1,2)", "\\boxed{[1, 2)}", True, "interval spacing"),
    Case("[1,2)", "\\boxed{(1,2)}", False, "wrong endpoint"),
    Case("(2,3)", "\\boxed{(3,2)}", False, "ordered pair swapped"),
    Case("(-\\infty,0)", "\\boxed{x<0}", True, "inequality for an interval", limitation=True),
    # multiple choice and text answers
    Case("\\text{(C)}", "\\boxed{C}", True, "bare letter"),
    Case("\\text{(C)}", "The final answer is (C).", True, "letter in parentheses"),
    Case("\\text{(C)}", "\\boxed{D}", False, "another letter"),
    Case("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", True, "a name"),
    Case("\\text{east}", "\\boxed{\\text{west}}", False, "another word"),
    # extraction: which answer counts
    Case("3", "The final answer is $\\boxed{3}$. I hope it is correct.", True, "\\boxed inside the paper format"),
    Case("\\frac{a}{b+1}", "\\boxed{\\frac{a}{b+1}}", True, "nested braces in \\boxed"),
    Case("4", "First guess \\boxed{3}. Checking again: " + paper("4"), True, "the last stated answer wins"),
    Case("3", "First guess \\boxed{3}. Checking again: " + paper("4"), False, "an earlier answer does not count"),
    Case("44", "Thus \\boxed{44}. Check: 17 * 44 = 748, so our answer is correct.", True,
         "\"answer is\" in prose after the \\boxed"),
    Case("16", "Janet's ducks lay 16 eggs a day. " + paper("18"), False,
         "a number restated from the question does not count"),
    Case("1200", "so the total is\n#### 1,200", True, "GSM8K #### with a thousands separator"),
    Case("18", "16 - 3 - 4 = 9 eggs, and 9 * 2 = 18 dollars.", True, "no marker: the last number"),
    Case("\\frac{1}{2}", "so the answer is \\boxed{\\frac{1}{2", False, "cut off inside \\boxed: no answer"),
    Case("0", "I am not sure.", False, "no answer at all"),
    # chat-model habits (an independent review, 2026-11-28)
    Case("18", "The final answer is **18**.", True, "markdown bold"),
    Case("18", "**The final answer is 18.**", True, "markdown bold around the sentence"),
    Case("5", "The final answer is:\n\n$$5$$", True, "the answer on the next line"),
    Case("18", "**Final Answer:**\n18", True, "bold marker, the answer on the next line"),
    Case("5", "Thus $\\boxed{5}$. Let me verify that the final answer is correct: 5*3=15.", True,
         "\"final answer is correct\" in prose after the \\boxed"),
    Case("18", "She makes 9 * 2 = 18 dollars. I think this answer is right.", True,
         "\"answer is right\" is prose: the last number counts"),
    Case("5", "\\boxed{5}\n\n#### Verification\n5 * 3 = 15, as required.", True,
         "a markdown #### heading is not GSM8K's marker"),
    Case("12", "The final answer is 12, since 4*3 = 12.", True, "a reason after the answer"),
    Case("1200", "The final answer is 1,200 dollars.", True, "thousands separator and a unit"),
    Case("81, 256", "\\boxed{81256}", False, "a list is not a number with a thousands separator"),
    Case("81, 256", "\\boxed{256, 81}", True, "a list with three-digit items, another order"),
    Case("10080", "\\boxed{10,\\!080}", True, "\\! after a thousands comma"),
    Case("2.5", "The answer is 2 1/2 hours.", True, "mixed number"),
    Case("10.5", "#### 2 1/2", False, "a mixed number is not 21/2"),
    Case("5", "The final answer is 5 dozen.", False, "a scale word is not a unit"),
    Case("3, 5, 7", "$\\boxed{3}, \\boxed{5}, \\boxed{7}$", True, "one box per solution", limitation=True),
]


def measured(case: Case) -> bool:
    return mt.grade(case.response, case.gold)


def _shipped_rows(dataset: str) -> list[dict]:
    path = resources.files("selfcorrect") / "data" / SHIPPED[dataset, "test"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bump_last_integer(answer: str) -> str | None:
    """The answer with its last integer increased by one (None when it has no digit)."""
    numbers = list(re.finditer(r"\d+", answer))
    if not numbers:
        return None
    last = numbers[-1]
    return answer[:last.start()] + str(int(last.group()) + 1) + answer[last.end():]


def plain_number(gold: str) -> str | None:
    """A numeric gold as bare digits ("11,\\! 111" -> "11111"); None for anything else,
    lists ("81, 256") included. Checks the normalisation of the gold, not only its echo."""
    s = re.sub(r"\s*\\!\s*", "", gold)
    if ", " in s:
        return None
    s = re.sub(r"\\[,;: ]|\s|[{}]", "", s)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    return s if re.fullmatch(r"-?\d+(?:\.\d+)?", s) and s != gold else None


def dataset_rows(dataset: str) -> list[tuple[str, str]]:
    """(gold, the dataset's own solution text) per test problem."""
    task = mt.MathTask(mt.MathTaskConfig(dataset=dataset))
    golds = [p.answer for p in task.problems("test")]
    key = "solution" if dataset == "math" else "answer"
    return list(zip(golds, (row[key] for row in _shipped_rows(dataset))))


def measure_dataset(dataset: str) -> dict:
    rows = dataset_rows(dataset)
    n = len(rows)
    forms = {
        'paper: "Final Answer: The final answer is $X$. I hope it is correct."': lambda g, s: "We compute it.\n" + paper(g),
        "boxed: \"... so the answer is $\\boxed{X}$.\"": lambda g, s: f"We compute it, so the answer is $\\boxed{{{g}}}$.",
        "the dataset's own solution (MATH: last \\boxed; GSM8K: #### X)": lambda g, s: s,
        "plain digits, for a gold written otherwise (`10,\\!080` as 10080)":
            lambda g, s: paper(plain) if (plain := plain_number(g)) else None,
    }
    result = {"n": n, "accept": {}, "reject": {}}
    for name, form in forms.items():
        pairs = [(g, r) for g, s in rows if (r := form(g, s)) is not None]
        failures = [(g, r) for g, r in pairs if not mt.grade(r, g)]
        result["accept"][name] = (len(pairs) - len(failures), len(pairs), failures)
    bumped = [(g, b) for g, _ in rows if (b := bump_last_integer(g)) is not None]
    others = [(g, o) for (g, _), (o, _) in zip(rows, rows[1:] + rows[:1]) if mt.normalise(o) != mt.normalise(g)]
    for name, pairs in {"last integer + 1": bumped, "the next problem's gold answer": others}.items():
        accepted = [(g, w) for g, w in pairs if mt.grade(paper(w), g)]
        result["reject"][name] = (len(pairs) - len(accepted), len(pairs), accepted)
    return result


def throughput(runs: int) -> dict:
    """Answers per second over MATH500 in the paper format, verdict cache cleared per run."""
    rows = dataset_rows("math")
    sets = {
        "right (the gold, paper format)": [(paper(g), g) for g, _ in rows],
        "wrong (last integer + 1, paper format)": [(paper(b), g) for g, _ in rows if (b := bump_last_integer(g))],
    }
    for worker in list(mt._POOL._free.queue):
        worker.stop()
    start = time.perf_counter()
    mt.grade(paper("1/2"), "0.5")  # starts one worker
    out = {"startup": time.perf_counter() - start, "rates": []}
    for name, pairs in sets.items():
        responses, golds = zip(*pairs)
        for how, grader in {"grade, one thread": lambda: [mt.grade(r, g) for r, g in pairs],
                            f"grade_many, {mt._POOL.size} workers": lambda: mt.grade_many(responses, golds)}.items():
            rates = []
            for _ in range(runs):
                mt._equivalent.cache_clear()
                start = time.perf_counter()
                grader()
                rates.append(len(pairs) / (time.perf_counter() - start))
            out["rates"].append((name, how, len(pairs), statistics.median(rates)))
    return out


def _cell(text: str, width: int = 90) -> str:
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return "`" + (text if len(text) <= width else text[:width] + "…") + "`"


def write_report(out: Path, runs: int) -> None:
    start = time.perf_counter()
    datasets = {"MATH500 test": measure_dataset("math"), "GSM8K test": measure_dataset("gsm8k")}
    speed = throughput(runs)
    verdicts = [(c, measured(c)) for c in CASES]
    lines = [
        "# The math verifier, measured",
        "",
        f"Generated by `python scripts/verifier_report.py` on {date.today()} "
        f"(Python {platform.python_version()}, {os.cpu_count()} CPU cores shared with other jobs; "
        f"load average {os.getloadavg()[0]:.1f} at the start).",
        "What is graded and how: see the end of this page.",
        "",
        "## (a) Right answers, written as a model would, are accepted",
        "",
        "| data | form | accepted |",
        "|---|---|---|",
    ]
    for data, r in datasets.items():
        for form, (ok, n, _) in r["accept"].items():
            lines.append(f"| {data} | {form} | {ok}/{n} ({ok / n:.1%}) |")
    for data, r in datasets.items():
        for form, (_, _, failures) in r["accept"].items():
            if failures:
                lines += ["", f"Not accepted, {data}, {form}:", ""]
                lines += [f"- gold {_cell(g)}; extracted {_cell(str(mt.extract_answer(resp)))}" for g, resp in failures]
    lines += ["", "## (b) Wrong answers are rejected", "",
              "Each written in the paper format; the gold's last integer + 1 (golds without a digit skipped), "
              "and the next problem's gold where its normalised form differs.", "",
              "| data | wrong answer | rejected |", "|---|---|---|"]
    for data, r in datasets.items():
        for kind, (ok, n, _) in r["reject"].items():
            lines.append(f"| {data} | {kind} | {ok}/{n} ({ok / n:.1%}) |")
    for data, r in datasets.items():
        for kind, (_, _, accepted) in r["reject"].items():
            if accepted:
                lines += ["", f"Accepted although different strings, {data}, {kind} (a true equivalent, such as "
                          "`x=5` for `5`, is right to pass; the rest are known limitations, listed at the end):", ""]
                lines += [f"- gold {_cell(g)}, answer {_cell(w)}" for g, w in accepted]
    agree = sum(v == c.expected for c, v in verdicts)
    lines += ["", "## (c) Equivalent and non-equivalent forms", "",
              f"{agree}/{len(verdicts)} verdicts as intended. `limitation` marks a case where the intended verdict "
              "is not what the verifier does; tests/test_math_task.py asserts every other row.", "",
              "| gold | response | intended | measured | case |", "|---|---|---|---|---|"]
    for c, v in verdicts:
        mark = " (limitation)" if c.limitation else ""
        lines.append(f"| {_cell(c.gold, 40)} | {_cell(c.response, 70)} | {'accept' if c.expected else 'reject'} "
                     f"| {'accept' if v else 'reject'} | {c.note}{mark} |")
    lines += ["", "## (d) Throughput", "",
              f"Median of {runs} runs over MATH500, the verdict cache cleared before each run; the gold "
              "parses cached in the workers stay warm after the first run, as they do in training "
              "(n samples per problem). Right answers mostly take the string fast path; wrong ones all "
              "go to math-verify. Parallel workers pay only where cores are idle.", "",
              "| answers | how | n | answers/s |", "|---|---|---|---|"]
    lines += [f"| {name} | {how} | {n} | {rate:.0f} |" for name, how, n, rate in speed["rates"]]
    lines += ["", f"Starting a worker process (imports sympy and math-verify) took {speed['startup']:.1f} s.",
              f"Whole report: {time.perf_counter() - start:.0f} s.", ""]
    out.write_text("\n".join(lines) + METHOD)
    print(f"wrote {out}")


METHOD = """
## How an answer is graded

1. **Extract** the final answer from the response (`extract_answer`). The last of
   these markers wins: `final answer is ...` / `Final Answer: ...` (the paper's
   `Final Answer: The final answer is $X$. I hope it is correct.`; the answer is the
   first `$...$`, `$$...$$`, `\\(...\\)` or `\\[...\\]` after it, on its line or the
   next, else the rest of the sentence up to a reason, ", since ..."), the last
   `\\boxed{...}` / `\\fbox{...}` (braces matched), and GSM8K's `#### X` (a number, not
   a markdown heading). Only without them: `answer is ...` / `Answer: ...` (weaker).
   A marker followed by a verdict ("the final answer is correct", "answer is not ...")
   is prose and does not count. Only without any: the last number
   (the usual GSM8K fallback). A `\\boxed{}` inside the chosen span is unwrapped; a
   response cut off inside `\\boxed{` answers nothing.
2. **Normalise** both answers (`normalise`): LaTeX spacing (`\\!`, `\\,`, `~`),
   `\\left`/`\\right`, `\\dfrac`/`\\tfrac`, dollar signs, markdown `*` and a trailing
   period around the answer, thousands separators in a plain number (`1,200`; with a
   space after the comma, `81, 256` is a list and keeps its `, `), a mixed number
   (`2 1/2` is `2+1/2`), plain-word units after a number ("5 dollars"; not scale words
   such as "dozen" or "million"), and spaces that separate no two letters. Identical
   strings are right with no further work; numbers in two different bases (`52_8`,
   `52_9`) are wrong with none (math-verify drops the base).
3. **Check equivalence** with math-verify: `verify(parse("\\boxed{gold}"),
   parse("\\boxed{answer}"))`, in a separate worker process. The worker sets one
   timer per check (math-verify's own SIGALRM timeouts are off); the caller kills and
   restarts the worker when no verdict arrives within the timeout plus one second
   (arithmetic in C, e.g. a huge power, ignores signals). Timeouts and crashes count
   as wrong. The worker runs math-verify in its own main thread, so `grade` works from
   any thread of the caller; concurrent callers (or `grade_many`) use up to
   min(8, CPU count) workers. Verdicts are cached per (answer, gold).

Only the extracted final answer is graded: math-verify run over a whole response finds
expressions restated from the question and rewards wrong answers (DESIGN.md, section 4).

## Known limitations

- Number words (`three`) are not read as numbers.
- An inequality is not matched with the equivalent interval (`x<0` vs `(-\\infty,0)`).
- Decimal approximations of exact answers are rejected (`3.14159` for `\\pi`), and so
  are decimals rounded to fewer than 6 places (`0.333` for `1/3`); MATH asks for exact answers.
- Units are ignored, exponents included (`15\\mbox{ cm}^3` is accepted for `15\\mbox{ cm}^2`).
- Plain-word units are dropped only after a bare number; words that are maths
  (`pi`, `sqrt`, `times`, ...) keep the answer as it is.
- The last-number fallback (no marker at all) can credit a response that ends by
  restating a number that happens to be the answer; responses in the paper's format
  never use it.
- One `\\boxed{}` per solution (`\\boxed{3}, \\boxed{5}`) reads as the last box only.
- math-verify reads a tuple and a set alike (`(1,2)` and `\\{1,2\\}`), and a hedge in
  `\\text{}` is dropped (`18 \\text{ (or 19)}` is accepted for `18`).
- Scale words are not read (`1.5 million` is not `1500000`), nor unicode maths other
  than `π` and `−` (`√2`, `½`, `30°`).
- A model that runs on past its answer into a new problem is graded on the last marker,
  which is the new problem's (generation has no stop string).
- Answers longer than 500 characters count as wrong without a check (the longest MATH
  gold answer is 159 characters).
- The shipped MATH train file has two problems whose solutions box nothing
  (`train/number_theory/7115.json`, `7117.json`); they are left out of the train split.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "verifier.md")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    write_report(args.out, args.runs)


if __name__ == "__main__":
    main()
