"""The settle pass's index of archived rows: right answers in about 10 bytes a row."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from collector.core.keyindex import KeyIndex, Seen, _fingerprint

rows = st.dictionaries(st.text(min_size=1, max_size=12), st.binary(max_size=8), max_size=60)


@given(archived=rows, read_again=rows)
def test_index_answers_as_a_dict_of_archived_rows_would(
    archived: dict[str, bytes], read_again: dict[str, bytes]
) -> None:
    index = KeyIndex()
    for key, line in archived.items():
        index.add(key, line)
    for key, line in read_again.items():
        expected = (
            Seen.NEW
            if key not in archived
            # 16-bit fingerprints: one changed row in 65,536 passes for unchanged.
            else Seen.SAME
            if _fingerprint(archived[key]) == _fingerprint(line)
            else Seen.CHANGED
        )
        assert index.check(key, line) is expected
    assert index.unseen == len(archived.keys() - read_again.keys())
    assert len(index) == len(archived)


def test_changed_rows_are_told_apart_but_for_one_in_65536() -> None:
    index = KeyIndex()
    for i in range(20_000):
        index.add(str(i), b'{"i":%d,"callee":"+1555"}' % i)
    found = [index.check(str(i), b'{"i":%d,"callee":"+1666"}' % i) for i in range(0, 20_000, 2)]
    assert found.count(Seen.CHANGED) >= 9_990  # 10,000 comparisons; about 0.15 collide
    assert index.unseen == 10_000  # the odd rows were never read again


def test_a_key_archived_twice_is_found_with_either_content() -> None:
    index = KeyIndex()
    index.add("a", b"1")
    index.add("a", b"2")
    assert index.check("a", b"2") is Seen.SAME
    assert index.check("a", b"3") is Seen.CHANGED
    assert index.unseen == 0


def test_a_day_of_rows_costs_about_10_bytes_each() -> None:
    keys = [f"{i:08x}-4d5e-8f00-0000-000000000000" for i in range(100_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = KeyIndex()
        for key in keys:
            index.add(key, b"{}")
        assert index.check("absent", b"{}") is Seen.NEW  # sorted now, at its final size
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 8 (key hash) + 2 (fingerprint) bytes and a bit (seen) a row, plus 768 small arrays.
    least = len(keys) * 81 // 8
    assert least <= held < least + 100_000, held  # 1.5M rows: 15.2 MB
