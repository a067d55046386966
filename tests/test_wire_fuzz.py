"""Thousands of corrupted and random inputs: only PayloadError ever comes out, memory stays bounded."""

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from templar_jax.wire import PayloadError, decode, encode, expected_table
from templar_jax.wire.layout import PREFIX
from templar_jax.wire.synthetic import random_payload

TABLE = expected_table({
    "embed/embedding": (128, 64),
    "layers/attn_norm/scale": (2, 64),
    "layers/attn/wq": (2, 64, 128),
    "final_norm/scale": (13,),
})
META = {"window": 1, "uid": 2, "version": "0"}
GOOD = {c: encode(random_payload(np.random.default_rng(3), TABLE), META, expected=TABLE, index_coding=c)
        for c in ("elias-fano", "twelve-bit")}
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

coding = st.sampled_from(sorted(GOOD))


def _decode_only_payload_error(data):
    try:
        decode(data, TABLE)
    except PayloadError:
        return False
    return True


@FUZZ
@given(coding, st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flips(c, flips):
    data = bytearray(GOOD[c])
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    _decode_only_payload_error(bytes(data))


@FUZZ
@given(coding, st.integers(0, 10**9))
def test_truncations(c, cut):
    data = GOOD[c]
    assert not _decode_only_payload_error(data[: cut % len(data)])


@FUZZ
@given(st.binary(max_size=4096), st.booleans())
def test_random_bytes(blob, with_prefix):
    data = (PREFIX.pack(b"TJXW", 1, 0, len(blob)) + blob) if with_prefix else blob
    assert not _decode_only_payload_error(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(coding, st.data())
def test_header_edits(c, data):
    good = GOOD[c]
    hlen = PREFIX.unpack_from(good)[3]
    header = json.loads(good[PREFIX.size : PREFIX.size + hlen])
    body = good[PREFIX.size + hlen :]
    paths = [p for p in _paths(header) if p]
    path = data.draw(st.sampled_from(paths))
    node = header
    for key in path[:-1]:
        node = node[key]
    if data.draw(st.booleans()):
        node[path[-1]] = data.draw(json_values)
    elif isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = 10**12  # a huge declared size/shape
    h = json.dumps(header).encode()
    if _decode_only_payload_error(PREFIX.pack(b"TJXW", 1, 0, len(h)) + h + body):
        # only a meta edit, or an "edit" that rewrote a value unchanged, can leave it valid
        assert path[0] == "meta" or header == json.loads(good[PREFIX.size : PREFIX.size + hlen])


def test_deeply_nested_header_is_rejected_not_crashing():
    h = b"[" * 20000 + b"]" * 20000
    with pytest.raises(PayloadError):
        decode(PREFIX.pack(b"TJXW", 1, 0, len(h)) + h, expected_table({"a": (20000000,)}))


def test_huge_declared_shapes_never_allocate():
    good = GOOD["elias-fano"]
    hlen = PREFIX.unpack_from(good)[3]
    header = json.loads(good[PREFIX.size : PREFIX.size + hlen])
    entry = header["tensors"]["embed/embedding"]
    entry["shape"] = [2**40, 2**40]
    entry["num_chunks"] = 2**60
    entry["arrays"]["idx"]["shape"] = [2**40, 64]
    entry["arrays"]["idx"]["length"] = 2**46
    h = json.dumps(header).encode()
    data = PREFIX.pack(b"TJXW", 1, 0, len(h)) + h + good[PREFIX.size + hlen :]
    tracemalloc.start()
    try:
        with pytest.raises(PayloadError):
            decode(data, TABLE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # well under a MiB: nothing sized from the header
