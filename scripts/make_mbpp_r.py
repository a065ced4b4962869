"""Build MBPP-R: one fixed wrong first attempt per MBPP test problem (task ids 11-510).

    python3 scripts/make_mbpp_r.py [--out src/selfcorrect/data/mbpp_r.jsonl] [--workers N]

Each attempt is the reference solution with one realistic bug planted by an `ast`
mutation (kinds below), written back with `ast.unparse`. A mutant is kept only if it
runs and FAILS the problem's tests in the sandbox (status "failed": a wrong result or
an exception; never a syntax error or a timeout). Problems whose reference solution
(unparsed) does not pass are skipped. Deterministic: the candidates of a problem are
ordered by a random.Random seeded with its task id, kinds taking turns, and the first
mutant that fails wins. Prints a Markdown table of counts for docs/code-task.md.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import random
import time
from collections import Counter
from pathlib import Path

from selfcorrect.sandbox import run_many
from selfcorrect.tasks.code import CodeTask, mbpp_rows

KINDS = ("off_by_one", "comparison", "wrong_return", "missing_edge_case", "swapped_arguments", "wrong_operator")
ROUNDS = 8  # candidates tried per problem at most
SWAP_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
SWAP_ARITHMETIC = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.FloorDiv, ast.FloorDiv: ast.Div}
NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
EXITS = (ast.Return, ast.Raise, ast.Continue, ast.Break)


def _int(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _shift(expr: ast.expr, delta: int) -> ast.expr:
    """expr + delta, folded into the constant it already has: 3 -> 4, n + 1 -> n + 2, n - 1 -> n."""
    if _int(expr):
        return ast.Constant(expr.value + delta)
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub) and _int(expr.operand):
        return ast.Constant(-expr.operand.value + delta)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)) and _int(expr.right):
        value = expr.right.value * (1 if isinstance(expr.op, ast.Add) else -1) + delta
        if value == 0:
            return expr.left
        return ast.BinOp(expr.left, ast.Add() if value > 0 else ast.Sub(), ast.Constant(abs(value)))
    return ast.BinOp(expr, ast.Add() if delta > 0 else ast.Sub(), ast.Constant(abs(delta)))


def _integer_like(expr) -> bool:
    """An index that reads as integer arithmetic (not d[key])."""
    return _int(expr) or (isinstance(expr, ast.UnaryOp) and _int(expr.operand)) or (
        isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)) and _int(expr.right))


def _slots(node) -> list[tuple[object, str, int | None]]:
    """(owner, field, list index) of every expression an off-by-one may shift in `node`."""
    slots = []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and node.args \
            and not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args):
        slots.append((node, "args", 0 if len(node.args) == 1 else 1))  # stop
        if len(node.args) >= 2:
            slots.append((node, "args", 0))  # start
    if isinstance(node, ast.Subscript) and _integer_like(node.slice):
        slots.append((node, "slice", None))
    if isinstance(node, ast.Slice):
        slots += [(node, field, None) for field in ("lower", "upper") if getattr(node, field) is not None
                  and (_integer_like(getattr(node, field)) or isinstance(getattr(node, field), ast.Name))]
    return slots


def _get(owner, field, index):
    value = getattr(owner, field)
    return value if index is None else value[index]


def _set(owner, field, index, new):
    if index is None:
        setattr(owner, field, new)
    else:
        getattr(owner, field)[index] = new


def _local_names(function: ast.FunctionDef) -> list[str]:
    """Parameters, then assigned names, in order of first appearance."""
    names = [a.arg for a in function.args.args]
    names += [n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    return list(dict.fromkeys(names))


def candidates(tree: ast.Module) -> list[tuple[str, int, object]]:
    """Every single mutation of `tree` as (kind, node index in ast.walk order, variant)."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for i, node in enumerate(ast.walk(tree)):
        found += [("off_by_one", i, (slot, delta)) for slot in range(len(_slots(node))) for delta in (-1, 1)]
        if isinstance(node, ast.Compare):
            found += [("comparison", i, j) for j, op in enumerate(node.ops) if type(op) in SWAP_COMPARE]
        if isinstance(node, ast.Return) and node.value is not None:
            function = parents.get(node)
            while function is not None and not isinstance(function, ast.FunctionDef):
                function = parents.get(function)
            if isinstance(node.value, ast.Name) and function is not None:
                found += [("wrong_return", i, name) for name in _local_names(function) if name != node.value.id]
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool):
                found.append(("wrong_return", i, not node.value.value))
        if isinstance(node, ast.If) and not node.orelse and len(node.body) == 1 and isinstance(node.body[0], EXITS):
            siblings = next(v for v in vars(parents[node]).values() if isinstance(v, list) and node in v)
            if len(siblings) > 1:
                found.append(("missing_edge_case", i, None))
        if isinstance(node, ast.BoolOp):
            found += [("missing_edge_case", i, j) for j in range(len(node.values))]
        if isinstance(node, ast.Call) and len(node.args) >= 2 and ast.unparse(node.func) != "print" \
                and not any(isinstance(a, ast.Starred) for a in node.args[:2]) \
                and ast.unparse(node.args[0]) != ast.unparse(node.args[1]):
            found.append(("swapped_arguments", i, None))
        if isinstance(node, ast.BinOp) and isinstance(node.op, NON_COMMUTATIVE) \
                and ast.unparse(node.left) != ast.unparse(node.right):
            found.append(("swapped_arguments", i, None))
        if isinstance(node, ast.BinOp) and type(node.op) in SWAP_ARITHMETIC:
            found.append(("wrong_operator", i, None))
    return found


def _one_line(node) -> str:
    return " ".join(line.strip() for line in ast.unparse(node).splitlines())


def mutate(tree: ast.Module, kind: str, index: int, variant) -> tuple[str, str]:
    """(new code, "old -> new" description) for one candidate, on a copy of `tree`."""
    tree = copy.deepcopy(tree)
    nodes = list(ast.walk(tree))
    node = nodes[index]
    before = _one_line(node)
    shown = node  # the node whose new text describes the change
    if kind == "off_by_one":
        slot, delta = variant
        owner, field, at = _slots(node)[slot]
        _set(owner, field, at, _shift(_get(owner, field, at), delta))
    elif kind == "comparison":
        node.ops[variant] = SWAP_COMPARE[type(node.ops[variant])]()
    elif kind == "wrong_return":
        node.value = ast.Name(variant, ast.Load()) if isinstance(variant, str) else ast.Constant(variant)
    elif kind == "missing_edge_case" and variant is None:  # drop a guard `if ...: return ...`
        parent = next(p for p in nodes if node in ast.iter_child_nodes(p))
        next(v for v in vars(parent).values() if isinstance(v, list) and node in v).remove(node)
        return ast.unparse(ast.fix_missing_locations(tree)), f"removed `{before}`"
    elif kind == "missing_edge_case":  # drop one condition of an and/or
        kept = [v for j, v in enumerate(node.values) if j != variant]
        shown = kept[0] if len(kept) == 1 else ast.BoolOp(node.op, kept)
        parent = next(p for p in nodes if node in ast.iter_child_nodes(p))
        for field, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, field, shown)
            elif isinstance(value, list) and node in value:
                value[value.index(node)] = shown
    elif kind == "swapped_arguments":
        if isinstance(node, ast.Call):
            node.args[0], node.args[1] = node.args[1], node.args[0]
        else:
            node.left, node.right = node.right, node.left
    elif kind == "wrong_operator":
        node.op = SWAP_ARITHMETIC[type(node.op)]()
    return ast.unparse(ast.fix_missing_locations(tree)), f"`{before}` -> `{_one_line(shown)}`"


def ordered(task_id: int, tree: ast.Module) -> list[tuple[str, int, object]]:
    """The problem's candidates, shuffled per kind, kinds taking turns in a shuffled order."""
    rng = random.Random(task_id)
    by_kind = {kind: [c for c in candidates(tree) if c[0] == kind] for kind in KINDS}
    kinds = [k for k in KINDS if by_kind[k]]
    rng.shuffle(kinds)
    for kind in kinds:
        rng.shuffle(by_kind[kind])
    longest = max((len(v) for v in by_kind.values()), default=0)
    return [by_kind[k][j] for j in range(longest) for k in kinds if j < len(by_kind[k])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/selfcorrect/data/mbpp_r.jsonl")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    started = time.monotonic()
    rows, tests = mbpp_rows(), {p.id: p.answer for p in CodeTask().problems("test")}
    trees = {tid: ast.parse(rows[tid]["code"]) for tid in range(11, 511)}
    run = lambda jobs: run_many(jobs, workers=args.workers, timeout=args.timeout)
    # The reference, as ast.unparse writes it, must pass: then the planted bug is what fails.
    reference = run([(ast.unparse(trees[t]), tests[f"mbpp/{t}"]) for t in trees])
    queue = {t: ordered(t, trees[t]) for t, r in zip(trees, reference) if r.passed}
    print(f"reference solutions passing: {len(queue)} / {len(trees)}")
    kept, tried = {}, Counter()
    for round_ in range(ROUNDS):
        todo = [t for t in queue if t not in kept and round_ < len(queue[t])]
        mutants = [(t, queue[t][round_][0], *mutate(trees[t], *queue[t][round_])) for t in todo]
        results = run([(code, tests[f"mbpp/{t}"]) for t, _, code, _ in mutants])
        for (t, kind, code, change), result in zip(mutants, results):
            tried[kind, result.status] += 1
            if result.status == "failed":
                kept[t] = {"task_id": t, "mutation": kind, "change": change,
                           "failure": result.detail.split(":")[0], "attempt": code}
    with args.out.open("w") as f:
        for t in sorted(kept):
            f.write(json.dumps(kept[t]) + "\n")
    counts = Counter(r["mutation"] for r in kept.values())
    failures = Counter(r["mutation"] for r in kept.values() if r["failure"] == "AssertionError")
    print(f"kept {len(kept)} of {len(queue)} problems in {time.monotonic() - started:.0f} s -> {args.out}\n")
    print("| mutation | kept | of which wrong result (AssertionError) | mutants tried: failed / passed / timeout / error |")
    print("|---|---|---|---|")
    for kind in KINDS:
        tries = " / ".join(str(tried[kind, s]) for s in ("failed", "passed", "timeout", "error"))
        print(f"| {kind} | {counts[kind]} | {failures[kind]} | {tries} |")
    print(f"| total | {len(kept)} | {sum(failures.values())} | {sum(tried.values())} tried |")


if __name__ == "__main__":
    main()
