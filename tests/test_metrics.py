import pytest
import torch

from selfcorrect.evaluate import collapse_metrics, correction_metrics, edit_ratio, wilson


def test_correction_metrics_on_hand_made_rewards():
    r = torch.tensor([[0, 1], [0, 1], [1, 0], [1, 1], [0, 0]])
    m = correction_metrics(r)
    assert m["acc_t1"] == pytest.approx(0.4) and m["acc_t2"] == pytest.approx(0.6)
    assert m["delta_i2c"] == pytest.approx(0.4) and m["delta_c2i"] == pytest.approx(0.2)
    assert m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])
    lo, hi = m["acc_t1_ci"]
    assert lo < 0.4 < hi
    lo, hi = m["delta_ci"]
    assert lo < 0.2 < hi


def test_wilson_interval_shrinks_with_n():
    small, large = wilson(5, 10), wilson(500, 1000)
    assert small[0] < large[0] < 0.5 < large[1] < small[1]
    assert wilson(0, 10)[0] == 0.0


def test_collapse_metrics():
    attempts = [[[1, 2, 3], [1, 2, 3]], [[1, 2, 3], [4, 5, 6]]]
    m = collapse_metrics(attempts, answers=[["3", "3"], [None, None]])
    assert m["identical"] == 0.5
    assert m["same_answer"] == 0.5  # two missing answers are not the same answer
    assert m["edit_ratio"] == pytest.approx(0.5)
    assert edit_ratio([1, 2], [1, 3]) == pytest.approx(0.5)


def test_per_seed_table_lists_every_seed_and_skips_single_evaluations():
    from selfcorrect.report import per_seed_table

    runs = {"SCoRe": [{"delta": 0.335, "delta_i2c": 0.356, "delta_c2i": 0.021},
                      {"delta": -0.004, "delta_i2c": 0.09, "delta_c2i": 0.094}],
            "base": [{"delta": 0.0, "delta_i2c": 0.0, "delta_c2i": 0.0}]}
    lines = per_seed_table(runs).splitlines()
    assert lines[0] == "| Method | Δ seed 0 | Δ seed 1 | Δ i→c / c→i per seed |"
    assert lines[2] == "| SCoRe | +33.5 | -0.4 | 35.6 / 2.1, 9.0 / 9.4 |"
    assert len(lines) == 3  # the one-evaluation row (the base) has no per-seed spread


def test_table_has_a_column_per_attempt_and_delta_between_first_and_last():
    from selfcorrect.report import markdown_table
    two = correction_metrics(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    three = correction_metrics(torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    head = lambda table: table.splitlines()[0]
    assert head(markdown_table({"a": [two]})) == ("| Method | Acc@t1 | Acc@t2 | Δ(t1,t2) | Δ i→c | Δ c→i | "
                                                 "same answer | edit ratio |")
    table = markdown_table({"two attempts": [two], "three attempts": [three]})
    assert "| Acc@t3 | Δ(t1,t3) |" in head(table)
    two_row, three_row = (line.split(" | ") for line in table.splitlines()[2:])
    assert three_row[0] == "| three attempts" and three_row[1].startswith("50.0 [")
    assert two_row[3] == "–" and three_row[3].startswith("100.0 [")  # Acc@t3: absent, then 2 of 2
