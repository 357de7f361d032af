"""The rollups' sketch: 1 % relative accuracy, exact counts, mergeable, removable, compact."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lambdascope.collector.sketch import ALPHA, Sketch

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
# The guarantee is alpha; the float arithmetic of a bucket boundary adds a hair.
TOLERANCE = ALPHA + 1e-9


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1) + 1e-9)]


def assert_close(got: float | None, want: float) -> None:
    assert got is not None
    if want == 0:
        assert got == 0
    else:
        assert abs(got - want) <= TOLERANCE * abs(want), (got, want)


positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
magnitudes = st.builds(
    lambda mantissa, exponent: mantissa * 10.0**exponent,
    st.floats(min_value=1.0, max_value=9.999),
    st.integers(min_value=-8, max_value=12),
)
any_sign = st.one_of(magnitudes, magnitudes.map(lambda v: -v), st.just(0.0))


class TestAccuracy:
    """Every quantile is within 1 % of the exact value of its rank."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(positive, min_size=1, max_size=400))
    def test_random_values(self, values: list[float]) -> None:
        sketch = Sketch(values)
        assert sketch.count == len(values)
        for q in QUANTILES:
            assert_close(sketch.quantile(q), exact(values, q))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(magnitudes, min_size=1, max_size=300))
    def test_tiny_and_huge_values(self, values: list[float]) -> None:
        sketch = Sketch(values)
        for q in QUANTILES:
            assert_close(sketch.quantile(q), exact(values, q))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(any_sign, min_size=1, max_size=300))
    def test_negative_and_zero_values(self, values: list[float]) -> None:
        sketch = Sketch(values)
        for q in QUANTILES:
            assert_close(sketch.quantile(q), exact(values, q))

    @settings(max_examples=50, deadline=None)
    @given(st.integers(min_value=0, max_value=2**31), st.sampled_from([0.3, 1.0, 2.5]))
    def test_skewed_distributions(self, seed: int, sigma: float) -> None:
        rng = random.Random(seed)
        # Latency-like: a log-normal body and a heavy tail of slow outliers.
        values = [rng.lognormvariate(3.0, sigma) for _ in range(2000)]
        values += [rng.paretovariate(1.2) * 1000 for _ in range(40)]
        sketch = Sketch(values)
        for q in QUANTILES:
            assert_close(sketch.quantile(q), exact(values, q))

    def test_quantiles_in_one_pass_agree_with_quantile(self) -> None:
        rng = random.Random(4)
        sketch = Sketch(rng.expovariate(0.01) for _ in range(5000))
        qs = (0.999, 0.5, 0.0, 0.95, 1.0)
        assert sketch.quantiles(qs) == [sketch.quantile(q) for q in qs]

    def test_one_value(self) -> None:
        sketch = Sketch([42.0])
        for q in QUANTILES:
            assert_close(sketch.quantile(q), 42.0)

    def test_identical_values(self) -> None:
        sketch = Sketch([7.5] * 1000)
        assert_close(sketch.quantile(0.5), 7.5)
        assert sketch.count == 1000
        assert len(sketch.positive) == 1


class TestCountsAndSums:
    """Counts and sums are exact, whatever the buckets."""

    @settings(max_examples=100, deadline=None)
    @given(st.lists(positive, max_size=200))
    def test_count_and_sum(self, values: list[float]) -> None:
        sketch = Sketch(values)
        assert sketch.count == len(values)
        assert math.isclose(sketch.sum, math.fsum(values), rel_tol=1e-9, abs_tol=1e-9)

    def test_empty(self) -> None:
        sketch = Sketch()
        assert sketch.count == 0
        assert sketch.quantile(0.5) is None
        assert sketch.quantiles((0.5, 0.9)) == [None, None]
        assert sketch.mean is None
        assert not sketch

    def test_nan_is_refused(self) -> None:
        with pytest.raises(ValueError, match="NaN"):
            Sketch().add(math.nan)

    def test_infinity_is_clamped_and_left_out_of_the_sum(self) -> None:
        sketch = Sketch([1.0, math.inf])
        assert sketch.count == 2
        assert sketch.sum == 1.0
        assert sketch.quantile(1.0) > 1e299

    def test_quantile_outside_0_1_is_refused(self) -> None:
        with pytest.raises(ValueError):
            Sketch([1.0]).quantile(1.5)


class TestMergeAndRemove:
    """Sketches add up like the data they describe, and take values back out."""

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.lists(any_sign, max_size=50), max_size=6))
    def test_merge_equals_the_sketch_of_everything(self, parts: list[list[float]]) -> None:
        merged = Sketch()
        for part in parts:
            merged.merge(Sketch(part))
        everything = [v for part in parts for v in part]
        assert merged == Sketch(everything)
        assert Sketch.merged(Sketch(p).to_bytes() for p in parts) == Sketch(everything)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(any_sign, max_size=80), st.lists(any_sign, max_size=80))
    def test_remove_undoes_add(self, kept: list[float], removed: list[float]) -> None:
        sketch = Sketch(kept + removed)
        for value in removed:
            sketch.remove(value)
        want = Sketch(kept)
        assert (sketch.positive, sketch.negative, sketch.zero, sketch.count) == (
            want.positive, want.negative, want.zero, want.count)
        # The sum is a float: taking values out leaves at most rounding of their size.
        scale = sum(abs(v) for v in kept + removed)
        assert sketch.sum == pytest.approx(want.sum, abs=1e-12 * scale + 1e-12)

    def test_subtract_undoes_merge(self) -> None:
        a = Sketch([1.0, 2.0, 3.0, 0.0, -4.0])
        b = Sketch([2.0, 50.0])
        assert a.copy().merge(b).subtract(b) == a

    def test_removing_a_value_never_added_is_refused(self) -> None:
        sketch = Sketch([1.0])
        with pytest.raises(ValueError):
            sketch.remove(500.0)
        with pytest.raises(ValueError):
            sketch.remove(0.0)
        assert sketch.count == 1

    def test_removing_everything_leaves_an_empty_sketch(self) -> None:
        values = [0.1, 0.2, 0.30000000000000004, 1e6]
        sketch = Sketch(values)
        for value in values:
            sketch.remove(value)
        assert sketch == Sketch()
        assert sketch.sum == 0.0


class TestBytes:
    """The serialised form round-trips exactly and stays small."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(any_sign, max_size=300))
    def test_round_trip(self, values: list[float]) -> None:
        sketch = Sketch(values)
        again = Sketch.from_bytes(sketch.to_bytes())
        assert again == sketch
        assert again.count == sketch.count
        assert again.sum == sketch.sum

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.integers(min_value=1, max_value=2**40), min_size=1, max_size=5))
    def test_large_counts(self, counts: list[int]) -> None:
        sketch = Sketch()
        for n, count in enumerate(counts):
            sketch.add(float(n + 1) ** 3, count)
        again = Sketch.from_bytes(sketch.to_bytes())
        assert again == sketch
        assert again.count == sum(counts)

    def test_dense_and_sparse_layouts(self) -> None:
        dense = Sketch(random.Random(1).lognormvariate(3, 0.5) for _ in range(10_000))
        sparse = Sketch([1e-6, 1.0, 1e6, 1e12])
        for sketch in (dense, sparse):
            assert Sketch.from_bytes(sketch.to_bytes()) == sketch
        assert Sketch.merged([dense.to_bytes(), sparse.to_bytes()]) == dense.copy().merge(sparse)

    def test_compact(self) -> None:
        rng = random.Random(2)
        sketch = Sketch(rng.lognormvariate(4, 1) for _ in range(100_000))
        assert len(sketch.to_bytes()) < 1200
        assert len(Sketch().to_bytes()) <= 12

    def test_merged_skips_empty_blobs(self) -> None:
        one = Sketch([3.0]).to_bytes()
        assert Sketch.merged([b"", None, one, Sketch().to_bytes()]) == Sketch([3.0])

    def test_unknown_format_is_refused(self) -> None:
        data = bytearray(Sketch([1.0]).to_bytes())
        data[0] = 99
        with pytest.raises(ValueError, match="format"):
            Sketch.from_bytes(bytes(data))
        with pytest.raises(ValueError, match="format"):
            Sketch.merged([bytes(data)])

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.lists(positive, min_size=1, max_size=60), min_size=1, max_size=8))
    def test_merged_quantiles_stay_within_one_percent(self, parts: list[list[float]]) -> None:
        everything = [v for part in parts for v in part]
        assume(everything)
        merged = Sketch.merged(Sketch(p).to_bytes() for p in parts)
        for q in QUANTILES:
            assert_close(merged.quantile(q), exact(everything, q))
