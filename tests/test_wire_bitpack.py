"""Bit packing and the Elias-Fano index code."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from templar_jax.wire.bitpack import pack_uint, packed_bytes, unpack_uint
from templar_jax.wire.elias_fano import EFDecodeError, ef_decode, ef_encode, ef_params
from templar_jax.wire.synthetic import random_sorted_indices


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 16), rows=st.integers(1, 4), n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_roundtrip(width, rows, n, seed):
    values = np.random.default_rng(seed).integers(0, 2**width, size=(rows, n))
    packed = pack_uint(values, width)
    assert packed.shape == (rows, packed_bytes(n, width))
    out, pad_ok = unpack_uint(packed, n, width)
    assert pad_ok
    np.testing.assert_array_equal(out, values)


def test_twelve_bit_matches_reference_byte_layout():
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, 4096, size=(5, 2))
    packed = pack_uint(pairs, 12)
    a, b = pairs[:, 0], pairs[:, 1]
    reference = np.stack([a & 0xFF, ((a >> 8) & 0xF) | ((b & 0xF) << 4), (b >> 4) & 0xFF], axis=1)
    np.testing.assert_array_equal(packed, reference.astype(np.uint8))


def test_two_bit_codes_four_per_byte():
    codes = np.array([[0, 1, 2, 3, 3]])
    packed = pack_uint(codes, 2)
    assert packed.tolist() == [[0b11100100, 0b11]]


def test_unpack_flags_nonzero_padding():
    packed = np.array([[0xFF, 0xFF]], np.uint8)  # 5 values of 2 bits use 10 of 16 bits
    _, pad_ok = unpack_uint(packed, 5, 2)
    assert not pad_ok


def test_ef_params_for_64_of_4096_is_64_bytes():
    p = ef_params(4096, 64)
    assert (p.low_bits, p.high_bits, p.low_bytes, p.high_bytes, p.row_bytes) == (6, 127, 48, 16, 64)


@pytest.mark.parametrize("universe,k", [(4096, 64), (4096, 2), (64, 64), (64, 32), (97, 2), (2816, 64), (1, 1),
                                        (50, 50), (4096, 4096), (3000, 1000)])
def test_ef_roundtrip_general_geometries(universe, k):
    rng = np.random.default_rng(universe * 7 + k)
    idx = random_sorted_indices(rng, 300, k, universe)
    p = ef_params(universe, k)
    code = ef_encode(idx, p)
    assert code.shape == (300, p.row_bytes)
    np.testing.assert_array_equal(ef_decode(code, p), idx)


def test_ef_extremes_first_and_last_indices():
    p = ef_params(4096, 64)
    idx = np.stack([np.arange(64), np.arange(4032, 4096)]).astype(np.int32)
    np.testing.assert_array_equal(ef_decode(ef_encode(idx, p), p), idx)


def test_ef_rejects_duplicates_and_wrong_bit_counts():
    p = ef_params(4096, 64)
    idx = np.arange(64, dtype=np.int32)[None] * 64
    code = ef_encode(idx, p)
    dup = code.copy()
    dup[0, 0] = 0  # low bits of index 0 and 1 both zero -> 0 and 64 stay; set index 1's low to match index 0
    dup[0, : p.low_bytes] = 0
    # Now make two high bits collapse: move bit of index 1 next to index 0 at the same high value.
    bitmap = np.unpackbits(dup[:, p.low_bytes:], axis=1, bitorder="little")
    bitmap[0, 2] = 0  # index 1 had high 1 -> position 2
    bitmap[0, 1] = 1  # now high(1) = 0 = high(0), low equal -> duplicate 0, 0
    dup[:, p.low_bytes:] = np.packbits(bitmap, axis=1, bitorder="little")
    with pytest.raises(EFDecodeError, match="strictly increasing"):
        ef_decode(dup, p)
    extra = code.copy()
    extra[0, p.low_bytes] |= 0b10000000  # an extra set bit in the high bitmap
    with pytest.raises(EFDecodeError, match="high bits set"):
        ef_decode(extra, p)
