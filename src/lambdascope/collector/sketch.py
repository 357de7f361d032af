"""A mergeable log-bucketed histogram with 1 % relative accuracy, in the manner of DDSketch
(Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees", VLDB 2019).

A positive value ``x`` is counted in bucket ``ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)`` and ``alpha = 0.01``; every value of a bucket lies within
``alpha`` of the bucket's representative ``2 * gamma**i / (gamma + 1)``, so a quantile read from
the buckets is within 1 % of the value of that rank. Negative values are counted the same way
by magnitude, and values too close to zero to be bucketed are counted apart. Counts are exact,
as is the sum of the values (kept beside the buckets for means and time shares).

Sketches ``merge`` by adding bucket counts, so the per-minute rollups of the store add up to
any window; ``remove`` takes a value back out (a replaced report leaves no trace).

The serialised form is compact and fast to read: a format byte, the zero count, the sum,
then for the positive and the negative buckets either the dense run of counts from the first
bucket to the last, or (when fewer than a quarter of those buckets are used) the differences
between successive bucket indexes and their counts; each as a little-endian array of the
narrowest integer width (1, 2, 4 or 8 bytes) that holds it.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate, repeat
from operator import add as _add
from operator import sub as _sub

__all__ = ["ALPHA", "GAMMA", "Sketch"]

#: Relative accuracy of every quantile.
ALPHA = 0.01
#: Ratio between consecutive bucket boundaries.
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA
_REP = 2.0 / (GAMMA + 1.0)
#: Magnitudes below this are counted as zero (far below any ms or MB figure we keep).
MIN_VALUE = 1e-9
#: Magnitudes above this are clamped (no duration or memory figure comes near it).
MAX_VALUE = 1e300

_FORMAT = 2
_SUM = struct.Struct("<d")
_log = math.log
_ceil = math.ceil


def _index(magnitude: float) -> int:
    if magnitude > MAX_VALUE:
        magnitude = MAX_VALUE
    return _ceil(_log(magnitude) * _INV_LOG_GAMMA)


def _value(index: int) -> float:
    return _REP * GAMMA**index


class Sketch:
    """Counts of values in log-spaced buckets: ``add``, ``remove``, ``merge``, ``quantile``.

    >>> s = Sketch()
    >>> for v in (1.0, 2.0, 3.0, 4.0, 100.0):
    ...     s.add(v)
    >>> s.count, round(s.quantile(0.5), 1)
    (5, 3.0)
    """

    __slots__ = ("count", "negative", "positive", "sum", "zero")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        for value in values:
            self.add(value)

    # -- building ---------------------------------------------------------------------------

    def add(self, value: float, count: int = 1) -> None:
        """Count ``value`` (``count`` times). NaN is refused; infinities are clamped."""
        if MIN_VALUE < value < MAX_VALUE:  # the common case, inlined: the writer's hot path
            i = _ceil(_log(value) * _INV_LOG_GAMMA)
            bins = self.positive
            bins[i] = bins.get(i, 0) + count
            self.count += count
            self.sum += value * count
            return
        if value > MIN_VALUE:
            bins = self.positive
            i = _index(value)
        elif value < -MIN_VALUE:
            bins = self.negative
            i = _index(-value)
        elif value == value:  # noqa: PLR0124 - NaN check
            self.zero += count
            self.count += count
            self.sum += value * count
            return
        else:
            raise ValueError("a sketch cannot count NaN")
        bins[i] = bins.get(i, 0) + count
        self.count += count
        if value != math.inf and value != -math.inf:
            self.sum += value * count

    def remove(self, value: float, count: int = 1) -> None:
        """Take ``value`` back out (it must have been added); ``ValueError`` otherwise."""
        if value > MIN_VALUE:
            bins = self.positive
            i = _index(value)
        elif value < -MIN_VALUE:
            bins = self.negative
            i = _index(-value)
        elif value == value:  # noqa: PLR0124
            if self.zero < count:
                raise ValueError(f"{value!r} was not counted in this sketch")
            self.zero -= count
            self.count -= count
            self.sum = self.sum - value * count if self.count else 0.0
            return
        else:
            raise ValueError("a sketch cannot count NaN")
        held = bins.get(i, 0)
        if held < count:
            raise ValueError(f"{value!r} was not counted in this sketch")
        if held == count:
            del bins[i]
        else:
            bins[i] = held - count
        self.count -= count
        if value != math.inf and value != -math.inf:
            self.sum -= value * count
        if self.count == 0:
            self.sum = 0.0  # no float residue on an empty sketch

    def discard(self, value: float) -> bool:
        """``remove`` when ``value`` is counted; False (and nothing changed) when it is not."""
        try:
            self.remove(value)
        except ValueError:
            return False
        return True

    def merge(self, other: Sketch) -> Sketch:
        """Add ``other``'s counts to this sketch; returns ``self``."""
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            if not mine:
                mine.update(theirs)
                continue
            get = mine.get
            for i, c in theirs.items():
                mine[i] = get(i, 0) + c
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        return self

    def subtract(self, other: Sketch) -> Sketch:
        """Take ``other``'s counts out of this sketch (the inverse of ``merge``)."""
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for i, c in theirs.items():
                held = mine.get(i, 0)
                if held < c:
                    raise ValueError("the sketch does not contain the one subtracted")
                if held == c:
                    del mine[i]
                else:
                    mine[i] = held - c
        if self.zero < other.zero:
            raise ValueError("the sketch does not contain the one subtracted")
        self.zero -= other.zero
        self.count -= other.count
        self.sum = self.sum - other.sum if self.count else 0.0
        return self

    def copy(self) -> Sketch:
        new = Sketch()
        new.positive = dict(self.positive)
        new.negative = dict(self.negative)
        new.zero, new.count, new.sum = self.zero, self.count, self.sum
        return new

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return (
            self.positive == other.positive
            and self.negative == other.negative
            and self.zero == other.zero
            and self.count == other.count
            and math.isclose(self.sum, other.sum, rel_tol=1e-9, abs_tol=1e-6)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sketch(count={self.count}, buckets={len(self.positive) + len(self.negative)})"

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def _buckets(self) -> Iterator[tuple[float, int]]:
        """(representative value, count) from the smallest value to the largest."""
        for i in sorted(self.negative, reverse=True):
            yield -_value(i), self.negative[i]
        if self.zero:
            yield 0.0, self.zero
        for i in sorted(self.positive):
            yield _value(i), self.positive[i]

    def quantile(self, q: float) -> float | None:
        """The value of rank ``floor(q * (count - 1))`` (0-based, ascending) within 1 %;
        ``None`` for an empty sketch."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, not {q!r}")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1) + 1e-9)
        seen = 0
        last = 0.0
        for value, count in self._buckets():
            seen += count
            last = value
            if seen > rank:
                return value
        return last

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Several quantiles in one pass over the buckets (``qs`` in any order)."""
        wanted = list(qs)
        if self.count == 0:
            return [None] * len(wanted)
        ranks = sorted(
            (math.floor(q * (self.count - 1) + 1e-9), n) for n, q in enumerate(wanted)
        )
        out: list[float | None] = [None] * len(wanted)
        k = 0
        seen = 0
        last = 0.0
        for value, count in self._buckets():
            seen += count
            last = value
            while k < len(ranks) and seen > ranks[k][0]:
                out[ranks[k][1]] = value
                k += 1
            if k == len(ranks):
                break
        for _, n in ranks[k:]:
            out[n] = last
        return out

    # -- bytes ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        out = bytearray((_FORMAT,))
        _put(out, self.zero)
        out += _SUM.pack(self.sum)
        for bins in (self.positive, self.negative):
            _encode_bins(out, bins)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sketch:
        sketch = cls()
        if not data:
            return sketch
        if data[0] != _FORMAT:
            raise ValueError(f"unknown sketch format {data[0]}")
        sketch.zero, pos = _get(data, 1)
        (sketch.sum,) = _SUM.unpack_from(data, pos)
        pos += 8
        count = sketch.zero
        for bins in (sketch.positive, sketch.negative):
            first, keys, counts, pos = _decode_bins(data, pos)
            if counts is None:
                continue
            if keys is None:  # dense
                bins.update(
                    (k, c) for k, c in zip(range(first, first + len(counts)), counts) if c
                )
            else:
                bins.update(zip(keys, counts))
            count += sum(counts)
        sketch.count = count
        return sketch

    @classmethod
    def merged(cls, blobs: Iterable[bytes | None]) -> Sketch:
        """One sketch from many serialised ones. Dense bucket runs are added slice by slice
        (``map(operator.add, ...)``), so merging thousands of rollup rows stays fast."""
        sketch = cls()
        zero = 0
        total = 0.0
        dense: list[list[int]] = [[], []]  # per store: counts from lo[k] on
        lo = [0, 0]
        sparse: list[dict[int, int]] = [sketch.positive, sketch.negative]
        unpack = _SUM.unpack_from
        for data in blobs:
            if not data:
                continue
            if data[0] != _FORMAT:
                raise ValueError(f"unknown sketch format {data[0]}")
            z, pos = _get(data, 1)
            zero += z
            total += unpack(data, pos)[0]
            pos += 8
            for k in (0, 1):
                first, keys, counts, pos = _decode_bins(data, pos)
                if counts is None:
                    continue
                if keys is not None:
                    bins = sparse[k]
                    get = bins.get
                    for i, c in zip(keys, counts):
                        bins[i] = get(i, 0) + c
                    continue
                acc = dense[k]
                n = len(counts)
                if not acc:
                    acc.extend(counts)
                    lo[k] = first
                    continue
                if first < lo[k]:
                    acc[0:0] = [0] * (lo[k] - first)
                    lo[k] = first
                start = first - lo[k]
                end = start + n
                if end > len(acc):
                    acc.extend([0] * (end - len(acc)))
                acc[start:end] = map(_add, acc[start:end], counts)
        count = zero
        for k in (0, 1):
            bins = sparse[k]
            base = lo[k]
            if dense[k]:
                get = bins.get
                for offset, c in enumerate(dense[k]):
                    if c:
                        bins[base + offset] = get(base + offset, 0) + c
            count += sum(bins.values())
        sketch.zero = zero
        sketch.count = count
        sketch.sum = total
        return sketch


# Serialised bucket runs. Each store (positive, negative) is written as its number of slots
# (0: empty), the first bucket index (zigzag varint), a layout byte, then fixed-width
# little-endian arrays in the narrowest width that holds them (1, 2, 4 or 8 bytes):
#   dense  (layout bit 7 clear): the count of every bucket from the first to the last;
#   sparse (layout bit 7 set):   the differences between successive bucket indexes, then the
#                                counts of the non-empty buckets.
# Bits 0-1 of the layout byte give the counts' width, bits 2-3 the differences' width.
# Dense runs are chosen when at least a quarter of their buckets are used.
_CODES = ("B", "H", "I", "Q")
_WIDTHS = tuple(array(code).itemsize for code in _CODES)
_BIG_ENDIAN = sys.byteorder == "big"


def _code(largest: int) -> int:
    if largest < 0x100:
        return 0
    if largest < 0x10000:
        return 1
    if largest < 0x100000000:
        return 2
    return 3


def _array(code: int, values: Iterable[int]) -> bytes:
    arr = array(_CODES[code], values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _read_array(code: int, data: bytes, pos: int, n: int) -> tuple[array[int], int]:
    arr = array(_CODES[code])
    end = pos + n * _WIDTHS[code]
    arr.frombytes(data[pos:end])
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr, end


def _encode_bins(out: bytearray, bins: dict[int, int]) -> None:
    if not bins:
        out.append(0)
        return
    keys = sorted(bins)
    first = keys[0]
    span = keys[-1] - first + 1
    count_code = _code(max(bins.values()))
    if len(keys) * 4 >= span:
        _put(out, span)
        _put(out, (first << 1) ^ (first >> 63))
        out.append(count_code)
        out += _array(count_code, map(bins.get, range(first, first + span), _zeros(span)))
        return
    steps = list(map(_sub, keys[1:], keys[:-1]))
    step_code = _code(max(steps)) if steps else 0
    _put(out, len(keys))
    _put(out, (first << 1) ^ (first >> 63))
    out.append(0x80 | (step_code << 2) | count_code)
    out += _array(step_code, steps)
    out += _array(count_code, map(bins.__getitem__, keys))


def _zeros(n: int) -> Iterable[int]:
    return repeat(0, n)


def _decode_bins(data: bytes, pos: int
                 ) -> tuple[int, Iterable[int] | None, array[int] | None, int]:
    """(first index, keys or None when dense, counts or None when empty, next position)."""
    n, pos = _get(data, pos)
    if not n:
        return 0, None, None, pos
    zig, pos = _get(data, pos)
    first = (zig >> 1) ^ -(zig & 1)
    layout = data[pos]
    pos += 1
    count_code = layout & 3
    if layout & 0x80:
        steps, pos = _read_array((layout >> 2) & 3, data, pos, n - 1)
        counts, pos = _read_array(count_code, data, pos, n)
        return first, accumulate(steps, initial=first), counts, pos
    counts, pos = _read_array(count_code, data, pos, n)
    return first, None, counts, pos


def _put(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _get(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
