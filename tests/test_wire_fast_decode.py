"""The streaming decoders give exactly what the reference decoders give: values, dtypes, and the
same typed error with the same reason on every bad input (random, corrupted and adversarial)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from templar_jax.wire import decode, elias_fano_jit, encode, expected_table, tensor_layout
from templar_jax.wire.bitpack import pack_uint, unpack_uint
from templar_jax.wire.codes_fast import unpack_codes
from templar_jax.wire.elias_fano import EFDecodeError, ef_decode, ef_encode, ef_params
from templar_jax.wire.elias_fano_fast import (
    chunk_popcount_table,
    chunk_positions_table,
    ef_decode_fast,
    fast_path_supported,
)
from templar_jax.wire.row_blocks import BLOCK_ROWS, STREAM_BLOCK_ROWS, all_blocks_ok, block_bounds
from templar_jax.wire.synthetic import random_payload, random_sorted_indices

# Covered by the fast path (the first six) and not (the reference answers for them).
GEOMETRIES = [(4096, 64), (4096, 32), (1024, 64), (256, 64), (128, 64), (64, 32), (2816, 64), (4096, 8),
              (4096, 128), (97, 2), (64, 64)]


def _outcome(fn, *args):
    """('ok', array) or ('error', reason): what a decoder did with these bytes."""
    try:
        return "ok", fn(*args)
    except EFDecodeError as e:
        return "error", str(e)


# The NumPy decoder always; the compiled one too where numba is installed (extra fast-decode).
BACKENDS = [False] + ([True] if elias_fano_jit.available() else [])


def _assert_same(code, p, pool=None):
    ref = _outcome(ef_decode, code, p)
    for compiled in BACKENDS:
        fast = _outcome(lambda c, q, pl: ef_decode_fast(c, q, pl, compiled=compiled), code, p, pool)
        assert ref[0] == fast[0], (compiled, ref, fast)
        if ref[0] == "ok":
            assert fast[1].dtype == ref[1].dtype == np.int32
            np.testing.assert_array_equal(fast[1], ref[1])
        else:
            assert fast[1] == ref[1]
    return ref[0]


def test_without_numba_the_numpy_decoder_answers(monkeypatch):
    p = ef_params(4096, 64)
    idx = random_sorted_indices(np.random.default_rng(3), 50, 64, 4096)
    monkeypatch.setattr(elias_fano_jit, "numba_module", lambda: None)
    assert not elias_fano_jit.available()
    np.testing.assert_array_equal(ef_decode_fast(ef_encode(idx, p), p), idx)
    with pytest.raises(RuntimeError, match="numba is not installed"):
        ef_decode_fast(ef_encode(idx, p), p, compiled=True)


@pytest.mark.skipif(not elias_fano_jit.available(), reason="numba not installed (extra fast-decode)")
def test_with_numba_the_compiled_decoder_answers(monkeypatch):
    p = ef_params(4096, 64)
    idx = random_sorted_indices(np.random.default_rng(4), 50, 64, 4096)
    used = []
    real = elias_fano_jit.row_decoder
    monkeypatch.setattr(elias_fano_jit, "row_decoder", lambda q: used.append(q) or real(q))
    np.testing.assert_array_equal(ef_decode_fast(ef_encode(idx, p), p), idx)
    assert used == [p]


def test_the_72b_geometry_takes_the_fast_path():
    assert fast_path_supported(ef_params(4096, 64))
    assert not fast_path_supported(ef_params(2816, 64))  # 151 high bits: over 16 bytes


def test_positions_table_lists_set_bits_in_order():
    table = chunk_positions_table()
    assert table[0b1010_0000_0000_0101, :4].tolist() == [0, 2, 13, 15]
    assert table[0xFFFF].tolist() == list(range(16))
    assert not table[0].any()


def test_popcount_table_for_numpy_1_counts_bits():
    values = np.arange(1 << 16, dtype=np.uint32)
    expected = sum((values >> bit) & 1 for bit in range(16))
    np.testing.assert_array_equal(chunk_popcount_table(), expected)


@pytest.mark.parametrize("universe,k", GEOMETRIES)
def test_valid_rows_decode_identically(universe, k):
    p = ef_params(universe, k)
    rng = np.random.default_rng(universe + k)
    rows = STREAM_BLOCK_ROWS + 37 if (universe, k) == (4096, 64) else 300  # several blocks for the main one
    idx = random_sorted_indices(rng, rows, k, universe)
    code = ef_encode(idx, p)
    readonly = np.frombuffer(code.tobytes(), np.uint8).reshape(code.shape)  # as the wire decoder sees it
    np.testing.assert_array_equal(ef_decode_fast(readonly, p), idx)
    _assert_same(readonly, p)
    assert ef_decode_fast(code[:0], p).shape == (0, k)


@pytest.mark.parametrize("universe,k", GEOMETRIES[:6])
def test_extreme_rows_decode_identically(universe, k):
    p = ef_params(universe, k)
    first = np.arange(k, dtype=np.int32)
    last = np.arange(universe - k, universe, dtype=np.int32)
    spread = (np.arange(k) * (universe // k)).astype(np.int32)
    code = ef_encode(np.stack([first, last, spread, first]), p)
    assert _assert_same(code, p) == "ok"


def _corruptions(code: np.ndarray, p, rng: np.random.Generator):
    """Named bad (or possibly still valid) variants of a valid code block."""
    yield "random bytes", rng.integers(0, 256, code.shape, dtype=np.uint8)
    yield "all ones", np.full_like(code, 0xFF)
    yield "all zeros", np.zeros_like(code)
    for _ in range(20):
        flipped = code.copy()
        row, col, bit = rng.integers(code.shape[0]), rng.integers(code.shape[1]), rng.integers(8)
        flipped[row, col] ^= np.uint8(1 << bit)
        yield "one bit flipped", flipped
    if 8 * p.high_bytes > p.high_bits:
        padded = code.copy()
        padded[-1, -1] |= np.uint8(0x80)  # the bitmap's padding bit in the last row
        yield "padding bit", padded
        # ... and one real bit cleared, so the row still counts k set bits
        last_set = np.flatnonzero(np.unpackbits(padded[-1, p.low_bytes:], bitorder="little")[: p.high_bits])[-1]
        padded[-1, p.low_bytes + last_set // 8] ^= np.uint8(1 << (last_set % 8))
        yield "padding bit for a real bit", padded
    # Two set bits swapped between neighbours keeps the count but can break the order.
    high = np.unpackbits(code[:, p.low_bytes:], axis=1, bitorder="little")
    for _ in range(10):
        row = rng.integers(code.shape[0])
        ones = np.flatnonzero(high[row, : p.high_bits])
        zeros = np.flatnonzero(high[row, : p.high_bits] == 0)
        if not len(ones) or not len(zeros):
            continue
        moved = high.copy()
        moved[row, rng.choice(ones)] = 0
        moved[row, rng.choice(zeros)] = 1
        bad = code.copy()
        bad[:, p.low_bytes:] = np.packbits(moved, axis=1, bitorder="little")
        yield "bit moved", bad
    dup = code.copy()
    dup[-1, : p.low_bytes] = 0  # equal low parts: adjacent equal highs become duplicates
    yield "low parts zeroed", dup


@pytest.mark.parametrize("universe,k", GEOMETRIES)
def test_corrupted_rows_fail_identically(universe, k):
    p = ef_params(universe, k)
    rng = np.random.default_rng(7 * universe + k)
    code = ef_encode(random_sorted_indices(rng, 40, k, universe), p)
    outcomes = {"ok": 0, "error": 0}
    for _, bad in _corruptions(code, p, rng):
        outcomes[_assert_same(bad, p)] += 1
    assert outcomes["error"] > 0


# Fast-path geometries for every low width 0..8 and chunk counts 2..8 (the list above covers 1, 2,
# 4, 6 and 7 low bits).
EVERY_LOW_WIDTH = [(64, 48), (512, 48), (2048, 48), (4096, 16), (4096, 64), (4096, 32), (1024, 64), (256, 64),
                   (128, 64)]


@pytest.mark.parametrize("universe,k", EVERY_LOW_WIDTH)
def test_every_low_width_takes_the_fast_path_and_decodes_identically(universe, k):
    p = ef_params(universe, k)
    assert fast_path_supported(p)
    rng = np.random.default_rng(universe * k)
    code = ef_encode(random_sorted_indices(rng, 70, k, universe), p)
    assert _assert_same(code, p) == "ok"
    for _, bad in _corruptions(code, p, rng):
        _assert_same(bad, p)


def test_low_widths_are_all_covered():
    assert {ef_params(u, k).low_bits for u, k in EVERY_LOW_WIDTH} == set(range(9))


def test_a_bad_row_in_a_later_block_names_the_same_row_with_threads():
    p = ef_params(4096, 64)
    rows = STREAM_BLOCK_ROWS + 2 * BLOCK_ROWS  # 2 blocks of the compiled decoder, 6 of the NumPy one
    code = ef_encode(random_sorted_indices(np.random.default_rng(1), rows, 64, 4096), p)
    code[rows - 5, p.low_bytes] ^= 1  # one bit more or less in that row's bitmap
    with ThreadPoolExecutor(2) as pool:
        assert _assert_same(code, p, pool) == "error"
    with pytest.raises(EFDecodeError, match=f"chunk {rows - 5} has"):
        ef_decode_fast(code, p)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(GEOMETRIES[:6]), st.integers(1, 6), st.data())
def test_hypothesis_bytes_decode_like_the_reference(geometry, rows, data):
    p = ef_params(*geometry)
    if data.draw(st.booleans()):  # arbitrary bytes: almost always invalid
        raw = data.draw(st.binary(min_size=rows * p.row_bytes, max_size=rows * p.row_bytes))
        code = np.frombuffer(raw, np.uint8).reshape(rows, p.row_bytes)
    else:  # a valid block with a few bytes overwritten: near-valid inputs
        seed = data.draw(st.integers(0, 2**32 - 1))
        code = ef_encode(random_sorted_indices(np.random.default_rng(seed), rows, p.k, p.universe), p)
        for _ in range(data.draw(st.integers(0, 3))):
            code[data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, p.row_bytes - 1))] = (
                data.draw(st.integers(0, 255)))
    _assert_same(code, p)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(GEOMETRIES[:6]), st.integers(1, 5), st.integers(0, 2**32 - 1), st.booleans())
def test_hypothesis_bitmaps_with_k_set_bits_decode_like_the_reference(geometry, rows, seed, low_zero):
    """The hardest inputs: every row has exactly k set bits (padding bits included), so only the
    order and range checks can tell good rows from bad ones."""
    p = ef_params(*geometry)
    rng = np.random.default_rng(seed)
    bitmap = np.zeros((rows, 8 * p.high_bytes), np.uint8)
    for row in range(rows):
        bitmap[row, rng.choice(8 * p.high_bytes, p.k, replace=False)] = 1
    low = np.zeros((rows, p.low_bytes), np.uint8) if low_zero else rng.integers(0, 256, (rows, p.low_bytes),
                                                                                   dtype=np.uint8)
    code = np.concatenate([low, np.packbits(bitmap, axis=1, bitorder="little")], axis=1)
    _assert_same(code, p)


@pytest.mark.parametrize("k", [64, 32, 8, 12, 5])
def test_codes_unpack_like_unpack_uint(k):
    rng = np.random.default_rng(k)
    rows = STREAM_BLOCK_ROWS + 3 if k == 64 else 50
    codes = rng.integers(0, 4, (rows, k), dtype=np.uint8)
    packed = pack_uint(codes, 2)
    ref, ref_ok = unpack_uint(packed, k, 2)
    with ThreadPoolExecutor(2) as pool:
        for p in (None, pool):
            got, ok = unpack_codes(packed, k, p)
            assert got.dtype == np.uint8 and ok == ref_ok
            np.testing.assert_array_equal(got, ref)
    if k % 4:  # nonzero padding bits are still reported
        bad = packed.copy()
        bad[0, -1] |= 0x80
        assert unpack_codes(bad, k)[1] is False


def test_every_byte_pattern_of_codes_matches():
    packed = np.arange(1 << 16, dtype=np.uint32).astype("<u2").view(np.uint8).reshape(-1, 2)  # 8 codes/row
    np.testing.assert_array_equal(unpack_codes(packed, 8)[0], unpack_uint(packed, 8, 2)[0])


def test_decode_with_threads_equals_one_thread():
    table = expected_table({"layers/attn/wq": (2, 256, 128), "layers/attn_norm/scale": (2, 64), "head": (64, 96)})
    payload = random_payload(np.random.default_rng(4), table)
    data = encode(payload, {"window": 1, "uid": 2, "version": "0"}, expected=table)
    one, _ = decode(data, table)
    two, _ = decode(data, table, workers=2)
    for name in table:
        for field in ("idx", "codes", "shift", "scale", "lut"):
            a, b = getattr(one[name], field), getattr(two[name], field)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(one[name].idx, payload[name].idx)
    with pytest.raises(ValueError, match="workers"):
        decode(data, table, workers=0)


def test_block_bounds_cover_rows_in_order():
    assert block_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert block_bounds(0, 4) == []
    with pytest.raises(ValueError):
        block_bounds(3, 0)


def test_blocks_after_a_failure_are_skipped():
    calls = []

    def fn(start, stop):
        calls.append(start)
        return start != 4

    assert all_blocks_ok(fn, 12, block_rows=4) is False
    assert calls == [0, 4]  # inline: block 8 never runs
    calls.clear()
    with ThreadPoolExecutor(1) as pool:  # one worker: blocks run in order
        assert all_blocks_ok(fn, 12, pool, block_rows=4) is False
    assert calls == [0, 4]
    with ThreadPoolExecutor(2) as pool:
        assert all_blocks_ok(lambda s, e: True, 12, pool, block_rows=4) is True
        assert all_blocks_ok(fn, 12, pool, block_rows=4) is False


def test_a_bad_first_block_still_raises_the_reference_error_of_the_whole_tensor():
    p = ef_params(4096, 64)
    rows = STREAM_BLOCK_ROWS + 2 * BLOCK_ROWS
    code = ef_encode(random_sorted_indices(np.random.default_rng(2), rows, 64, 4096), p)
    code[3, p.low_bytes] ^= 1  # bit count wrong in block 0
    code[rows - 3, -1] |= 0x80  # a padding bit in the last block: the reference reports this first
    with pytest.raises(EFDecodeError, match="nonzero padding bits in high part"):
        ef_decode(code, p)
    for compiled in BACKENDS:
        with pytest.raises(EFDecodeError, match="nonzero padding bits in high part"):
            ef_decode_fast(code, p, compiled=compiled)
        with ThreadPoolExecutor(2) as pool, pytest.raises(EFDecodeError, match="nonzero padding bits in high part"):
            ef_decode_fast(code, p, pool, compiled=compiled)


def _root(a: np.ndarray) -> np.ndarray:
    while a.base is not None:
        a = a.base
    return a


@pytest.mark.skipif(not elias_fano_jit.available(), reason="numba not installed (extra fast-decode)")
def test_without_a_writable_numba_cache_the_decoder_still_compiles(monkeypatch):
    real, asked = elias_fano_jit.numba_module(), []

    class NoCache:
        def njit(self, **options):
            asked.append(options.get("cache", False))
            if options.get("cache"):
                raise RuntimeError("cannot cache function 'decode_rows': no locator available for file")
            return real.njit(**options)

    p = ef_params(2048, 64)  # a geometry no other test compiles (the decoders are cached per geometry)
    idx = random_sorted_indices(np.random.default_rng(9), 20, 64, 2048)
    monkeypatch.setattr(elias_fano_jit, "numba_module", NoCache)
    np.testing.assert_array_equal(ef_decode_fast(ef_encode(idx, p), p, compiled=True), idx)
    assert asked == [True, False]


def test_decoders_write_into_out_when_given():
    p = ef_params(4096, 64)
    idx = random_sorted_indices(np.random.default_rng(5), 300, 64, 4096)
    code = ef_encode(idx, p)
    for compiled in BACKENDS:
        out = np.full((300, 64), -1, np.int32)
        assert ef_decode_fast(code, p, compiled=compiled, out=out) is out
        np.testing.assert_array_equal(out, idx)
        with pytest.raises(ValueError, match="out must be"):
            ef_decode_fast(code, p, compiled=compiled, out=np.empty((300, 64), np.int64))
    codes = np.random.default_rng(6).integers(0, 4, (300, 64), dtype=np.uint8)
    out = np.empty((300, 64), np.uint8)
    got, ok = unpack_codes(pack_uint(codes, 2), 64, out=out)
    assert got is out and ok
    np.testing.assert_array_equal(out, codes)
    with pytest.raises(ValueError, match="out must be"):
        unpack_codes(pack_uint(codes, 2), 64, out=np.empty((300, 32), np.uint8))


def test_decode_puts_every_index_in_one_allocation_and_every_code_in_another():
    table = expected_table({"layers/attn/wq": (2, 256, 128), "layers/attn/wk": (2, 256, 64), "head": (64, 96)})
    payload = random_payload(np.random.default_rng(8), table)
    decoded, _ = decode(encode(payload, {"window": 1, "uid": 2, "version": "0"}, expected=table), table)
    layouts = {n: tensor_layout(table[n], "elias-fano") for n in table}
    coded = [n for n, lay in layouts.items()  # head: 3072-entry chunks, so the reference decoder's array
             if lay.idx_coding == "elias-fano" and fast_path_supported(ef_params(lay.chunk_size, lay.k))]
    assert len(coded) == 2
    assert len({id(_root(decoded[n].idx)) for n in coded}) == 1
    assert len({id(_root(decoded[n].codes)) for n in table}) == 1
    for name in table:
        np.testing.assert_array_equal(decoded[name].idx, payload[name].idx)
        np.testing.assert_array_equal(decoded[name].codes, payload[name].codes)
