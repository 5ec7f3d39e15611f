"""ClassBalancedSampler: class frequencies against their expectation, draws without
replacement, reproducibility, resume through the DataLoader, errors, and the docs page."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resume_support import resumed_in_a_child

import ladle
from ladle import ClassBalancedSampler
from ladle.testing import assert_batches_equal, assert_resumes

seeds = st.integers(0, 2**63 - 1)
SKEWED = np.array([0] * 1000 + [1] * 100 + [2] * 10)


def order_count(order: list[int], label: int) -> int:
    return int(np.count_nonzero(SKEWED[order] == label))


def frequencies(sampler: ClassBalancedSampler, order: list[int]) -> dict[Any, float]:
    counts = Counter(sampler.labels[order].tolist())
    return {c: counts.get(c, 0) / len(order) for c in sampler.expected_class_frequencies()}


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (None, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}),
        ({2: 2.0}, {0: 0.25, 1: 0.25, 2: 0.5}),
        ([0.0, 1.0, 3.0], {0: 0.0, 1: 0.25, 2: 0.75}),
    ],
)
def test_with_replacement_frequencies_converge_to_the_expected(
    weights: Any, expected: dict[int, float]
) -> None:
    n = 30_000
    sampler = ClassBalancedSampler(SKEWED, n, class_weights=weights, seed=0)
    assert sampler.expected_class_frequencies() == pytest.approx(expected)
    for epoch in range(2):
        order = sampler.epoch_order(epoch).tolist()
        got = frequencies(sampler, order)
        for c, p in expected.items():
            # 5 standard deviations of a binomial proportion: fails by chance ~1e-6 per check
            assert abs(got[c] - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12, (c, got, expected)
        assert sampler.class_counts(epoch) == {c: order_count(order, c) for c in expected}
    # within a class each sample is as likely: the 10 rare ones are all drawn, evenly
    rare = Counter(i for i in sampler.epoch_order(0).tolist() if SKEWED[i] == 2)
    if expected[2]:
        assert set(rare) == set(range(1100, 1110))
        mean = sum(rare.values()) / 10
        assert max(abs(v - mean) for v in rare.values()) <= 5 * np.sqrt(mean)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=80),
    st.lists(st.floats(0.0, 5.0), min_size=5, max_size=5),
    st.data(),
    seeds,
)
def test_without_replacement_draws_distinct_samples_in_exact_quotas(
    labels: list[int], raw_weights: list[float], data: st.DataObject, seed: int
) -> None:
    classes = sorted(set(labels))
    weights = {c: raw_weights[c] for c in classes}
    if sum(weights.values()) == 0:
        with pytest.raises(ValueError, match="at least one class a weight > 0"):
            ClassBalancedSampler(labels, replacement=False, class_weights=weights, seed=seed)
        return
    default = ClassBalancedSampler(labels, replacement=False, class_weights=weights, seed=seed)
    most = len(default)  # the default: the largest epoch every quota fits
    count = data.draw(st.integers(1, most))
    sampler = ClassBalancedSampler(labels, count, False, weights, seed=seed)
    order = sampler.epoch_order(0).tolist()
    assert len(order) == count == len(set(order))  # each sample at most once
    quotas = sampler.expected_class_frequencies()
    counts = sampler.class_counts(0)
    assert sum(counts.values()) == count
    total = sum(weights.values())
    for c in classes:
        assert counts[c] == round(quotas[c] * count)  # the reported shares are exact
        assert abs(counts[c] - count * weights[c] / total) < 1  # and the quota is rounded
        if weights[c] == 0:
            assert counts[c] == 0
    with pytest.raises(ValueError, match=f"lower num_samples to at most {most}"):
        ClassBalancedSampler(labels, 2 * len(labels) + 1, False, weights, seed=seed)


def test_without_replacement_defaults_to_the_largest_balanced_epoch() -> None:
    sampler = ClassBalancedSampler(SKEWED, replacement=False, seed=4)
    assert len(sampler) == 30  # 10 of each class: the rare class has 10
    assert sampler.class_counts(0) == {0: 10, 1: 10, 2: 10}
    first, second = sampler.epoch_order(0), sampler.epoch_order(1)
    assert set(SKEWED[first].tolist()) == {0, 1, 2} and first.tolist() != second.tolist()
    with pytest.raises(ValueError) as error:
        ClassBalancedSampler(SKEWED, 33, replacement=False)
    assert "needs 11 distinct samples of class 2, which has 10" in str(error.value)
    assert "lower num_samples to at most 30 (every class's share" in str(error.value)
    assert "or set replacement=True" in str(error.value)
    # 32: 10.67 each; the rare class holds 10, so the two spare draws go to the others
    assert ClassBalancedSampler(SKEWED, 32, False).class_counts(0) == {0: 11, 1: 11, 2: 10}


def test_string_labels_and_named_weights() -> None:
    labels = ["cat"] * 50 + ["dog"] * 5 + ["eel"]
    sampler = ClassBalancedSampler(labels, 6000, class_weights={"eel": 0}, seed=1)
    assert sampler.classes.tolist() == ["cat", "dog", "eel"]
    assert sampler.expected_class_frequencies() == {"cat": 0.5, "dog": 0.5, "eel": 0.0}
    counts = sampler.class_counts(0)
    assert counts["eel"] == 0 and abs(counts["cat"] - 3000) < 5 * np.sqrt(1500)
    assert ClassBalancedSampler(np.array(labels, dtype=object), seed=1).classes.tolist() == [
        "cat",
        "dog",
        "eel",
    ]


def test_epochs_differ_and_the_seed_decides() -> None:
    a = ClassBalancedSampler(SKEWED, 200, seed=7)
    first, second = list(a), list(a)
    assert first != second
    b = ClassBalancedSampler(SKEWED, 200, seed=7)
    b.set_epoch(1)
    assert list(b) == second  # a pure function of (seed, epoch)
    assert list(ClassBalancedSampler(SKEWED, 200, seed=8)) != first
    assert list(ClassBalancedSampler(SKEWED, 200)) != list(ClassBalancedSampler(SKEWED, 200))
    assert all(isinstance(i, int) for i in first)


@pytest.mark.parametrize(
    ("labels", "kwargs", "error", "pattern"),
    [
        ([], {}, ValueError, r"labels should hold one label per sample, but got labels=\[\]"),
        ([0.5, 1.5], {}, TypeError, r"labels should be ints or strings, but got .* float64"),
        (np.zeros((4, 2), int), {}, ValueError, r"labels should be 1-d.*shape \(4, 2\).*argmax"),
        (3, {}, TypeError, r"labels should be a 1-d sequence of class labels"),
        ("abc", {}, TypeError, r"labels should be a 1-d sequence of class labels"),
        ([0, 1], {"class_weights": {5: 1.0}}, ValueError, r"class_weights names class 5.*\[0, 1\]"),
        ([0, 1], {"class_weights": [1.0]}, ValueError, r"class_weights has 1 weights .* 2 classes"),
        ([0, 1], {"class_weights": {0: -1}}, ValueError, r"class_weights\[0\] should be a number"),
        ([0, 1], {"class_weights": [1, float("nan")]}, ValueError, r"class_weights\[1\].*NaN"),
        ([0, 1], {"class_weights": "ab"}, TypeError, r"class_weights should be a mapping"),
        ([0, 1], {"class_weights": [0, 0]}, ValueError, r"at least one class a weight > 0"),
        ([0, 1], {"num_samples": 0}, ValueError, r"num_samples should be a positive integer"),
        ([0, 1], {"replacement": "no"}, ValueError, r"replacement should be True or False"),
        ([0, 1], {"seed": 1, "generator": np.random.default_rng()}, ValueError, r"not both"),
    ],
)
def test_bad_arguments_name_the_argument(
    labels: Any, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        ClassBalancedSampler(labels, **kwargs)


def balanced_loader(replacement: bool = True) -> ladle.DataLoader:
    labels = SKEWED[::10]  # 100, 10, 1
    ds = ladle.TensorDataset(np.arange(len(labels)), labels)
    sampler = ClassBalancedSampler(labels, 33, replacement=replacement, seed=3)
    return ladle.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=0)


@pytest.mark.parametrize("replacement", [True, False])
def test_loader_resumes_mid_epoch_exactly(replacement: bool) -> None:
    if not replacement:  # 33 without replacement does not fit: the rare class has 1 sample
        with pytest.raises(ValueError, match="at most 3"):
            balanced_loader(replacement)
        return
    whole = balanced_loader()
    uninterrupted = [list(whole), list(whole)]
    loader = balanced_loader()
    iterator = iter(loader)
    head = [next(iterator) for _ in range(5)]
    state = json.loads(json.dumps(loader.state_dict()))
    del iterator
    resumed = balanced_loader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(head + rest) == len(uninterrupted[0]) == 9
    for got, wanted in zip(head + rest, uninterrupted[0], strict=True):
        assert_batches_equal(got, wanted)
    for got, wanted in zip(list(resumed), uninterrupted[1], strict=True):
        assert_batches_equal(got, wanted)


@pytest.mark.parametrize("replacement", [True, False])
def test_loader_resumes_at_every_cut(replacement: bool) -> None:
    labels = np.array([0] * 12 + [1] * 4 + [2] * 3)

    def make() -> ladle.DataLoader:
        sampler = ClassBalancedSampler(labels, 9, replacement=replacement, seed=3)
        return ladle.DataLoader(list(range(len(labels))), batch_size=2, sampler=sampler)

    assert_resumes(make, epochs=2)


def test_loader_with_two_workers_resumes_exactly() -> None:
    setup = """
import numpy as np
import ladle
labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
def make():
    ds = ladle.TensorDataset(np.arange(100), labels)
    sampler = ladle.ClassBalancedSampler(labels, 60, seed=3)
    return ladle.DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2, timeout=30)
"""
    result = resumed_in_a_child(setup, cut=3)
    assert len(result["reference"]) == 8
    assert result["resumed"] == result["reference"]
    labels = [y for _, ys in result["reference"] for y in ys]
    assert all(labels.count(c) > 5 for c in (0, 1, 2))  # the rare class is drawn too
