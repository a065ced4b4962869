"""Math problem files: the shipped MATH and GSM8K data, or local JSONL / JSON files.

Shipped (src/selfcorrect/data, each folder with its SOURCE.md):
    math/math_train_12k_reconstructed.jsonl.gz   train, 12,000 (PRM800K's MATH train split)
    math/test.jsonl                               test, MATH500
    gsm8k/train.jsonl.gz, gsm8k/test.jsonl        train 7,473, test 1,319
Every problem in a bad file is reported as one line naming the file and the line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

from ..errors import SelfCorrectError

SHIPPED = {
    ("math", "train"): "math/math_train_12k_reconstructed.jsonl.gz",
    ("math", "test"): "math/test.jsonl",
    ("gsm8k", "train"): "gsm8k/train.jsonl.gz",
    ("gsm8k", "test"): "gsm8k/test.jsonl",
}


@dataclass(frozen=True)
class Record:
    id: str
    problem: str
    answer: str


def _rows(path: Path) -> Iterator[tuple[str, object]]:
    """(where, parsed row) for each row of a JSONL file, or each item of a JSON array."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")) as f:
            if name.endswith(".json"):
                try:
                    data = json.load(f)
                except json.JSONDecodeError as e:
                    raise SelfCorrectError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None
                if not isinstance(data, list):
                    raise SelfCorrectError(f"{path}: expected a JSON array of records")
                yield from ((f"{path}: record {i}", row) for i, row in enumerate(data, 1))
                return
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield f"{path}: line {n}", json.loads(line)
                    except json.JSONDecodeError as e:
                        raise SelfCorrectError(f"{path}: line {n}: invalid JSON ({e.msg})") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:  # missing, unreadable, corrupt gzip, not text
        raise SelfCorrectError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _field(row: object, name: str, where: str) -> str:
    value = row.get(name) if isinstance(row, dict) else None
    if value is None or str(value).strip() == "":
        raise SelfCorrectError(f"{where}: no field {name!r}")
    return str(value)


def read_records(path: Path, problem_field: str, answer_field: str, id_field: str | None,
                 gold: Callable[[str], str | None] | None, id_prefix: str, skip_empty: bool = False) -> list[Record]:
    """Records of one file; `gold` reads the answer out of the answer field (GSM8K's "####").

    `skip_empty` drops rows whose answer is present but empty instead of failing.
    """
    records = []
    for n, (where, row) in enumerate(_rows(path), 1):
        if skip_empty and isinstance(row, dict) and row.get(answer_field) == "":
            continue
        answer = _field(row, answer_field, where)
        if gold is not None:
            answer = gold(answer)
            if answer is None:
                raise SelfCorrectError(f"{where}: no final answer in field {answer_field!r}")
        id_ = _field(row, id_field, where) if id_field else f"{id_prefix}{n}"
        records.append(Record(id=id_, problem=_field(row, problem_field, where), answer=answer))
    if not records:
        raise SelfCorrectError(f"{path}: no records")
    return records


def load_records(dataset: str, split: str, path: str | None, **fields) -> list[Record]:
    """A split of a shipped dataset, or the local file `path`."""
    if path is not None:
        return read_records(Path(path), id_prefix=f"{Path(path).name}:", **fields)
    # The MATH train file has two problems whose solutions box nothing (MATH errata:
    # train/number_theory/7115.json and 7117.json); they cannot be graded, so are left out.
    with resources.as_file(resources.files("selfcorrect") / "data" / SHIPPED[dataset, split]) as shipped:
        return read_records(shipped, id_prefix=f"{dataset}/{split}/", skip_empty=True, **fields)


def split_records(train: list[Record], val_fraction: float) -> dict[str, list[Record]]:
    """Train minus val, and val: a fixed share of train chosen by a hash of the problem text.

    Hashing the text (not the position) keeps the split stable when a file is reordered
    and sends repeated problems to the same side.
    """
    def is_val(r: Record) -> bool:
        return int(hashlib.sha256(r.problem.encode()).hexdigest(), 16) % 10_000 < val_fraction * 10_000

    return {"train": [r for r in train if not is_val(r)], "val": [r for r in train if is_val(r)]}
