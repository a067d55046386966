"""encode/decode round trips, the validation list of SPEC 2.5, and measured sizes."""

import json
import struct

import numpy as np
import pytest

from templar_jax.sparseloco.payload import TensorPayload
from templar_jax.wire import PayloadError, decode, encode, expected_table, max_payload_bytes
from templar_jax.wire.layout import PREFIX
from templar_jax.wire.sizes import covenant_72b_table, encoded_size, size_report
from templar_jax.wire.synthetic import random_payload

SHAPES = {
    "embed/embedding": (256, 96),  # tiles 64 x 48, chunk 3072, k 64
    "layers/attn_norm/scale": (2, 128),  # 1-D rows of 64, every index sent
    "layers/attn/wq": (2, 128, 192),
    "layers/mlp/w_down": (2, 97, 64),  # prime dim: tiles of 1 x 64
    "final_norm/scale": (50,),
}
META = {"window": 7, "uid": 3, "global_step": 1234, "sample_digest": "ab" * 16, "version": "0.1.0"}


@pytest.fixture(scope="module")
def table():
    return expected_table(SHAPES)


@pytest.fixture(scope="module")
def payload(table):
    return random_payload(np.random.default_rng(0), table)


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        for field, x, y in zip(TensorPayload._fields, a[name], b[name]):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{name}.{field}")


@pytest.mark.parametrize("coding", ["elias-fano", "twelve-bit"])
def test_roundtrip(table, payload, coding):
    data = encode(payload, META, expected=table, index_coding=coding)
    out, meta = decode(data, table, expected_meta={"window": 7, "uid": 3})
    assert meta == META
    _assert_same(payload, out)
    assert out["layers/attn/wq"].idx.dtype == np.int32 and out["layers/attn/wq"].codes.dtype == np.uint8
    assert len(data) == encoded_size(table, META, index_coding=coding)


@pytest.mark.parametrize("coding", ["elias-fano", "twelve-bit"])
def test_decode_of_named_tensors_only(table, payload, coding):
    data = encode(payload, META, expected=table, index_coding=coding)
    names = ["layers/mlp/w_down", "embed/embedding"]
    out, meta = decode(data, table, names=names, workers=2)
    assert meta == META and sorted(out) == sorted(names)
    _assert_same({n: payload[n] for n in names}, out)
    with pytest.raises(PayloadError, match="no tensor 'nope'"):
        decode(data, table, names=["nope"])
    with pytest.raises(PayloadError, match="truncated"):  # the header and sizes are still checked
        decode(data[:-1], table, names=names)


def test_codings_decode_bit_identical_and_ef_is_smaller(table, payload):
    ef = encode(payload, META, expected=table)
    twelve = encode(payload, META, expected=table, index_coding="twelve-bit")
    _assert_same(decode(ef, table)[0], decode(twelve, table)[0])
    assert len(ef) < len(twelve)


def test_accepts_shape_dict_with_batch_dims_and_jax_arrays(table, payload):
    import jax.numpy as jnp

    jax_payload = {n: TensorPayload(*(jnp.asarray(a) for a in tp)) for n, tp in payload.items()}
    data = encode(jax_payload, META, expected=SHAPES)
    out, _ = decode(data, SHAPES, batch_dims={"layers/attn/wq": 1})
    _assert_same(payload, out)


def test_jax_compat_flat_subset_with_require_all_false(table, payload):
    part = {"embed/embedding": payload["embed/embedding"]}
    data = encode(part, META, expected=table)
    with pytest.raises(PayloadError, match="missing tensor"):
        decode(data, table)
    out, _ = decode(data, table, require_all=False)
    _assert_same(part, out)


# --- the SPEC 2.5 validation list, one case each --------------------------------------------


def _split(data):
    _, _, _, hlen = PREFIX.unpack_from(data)
    return json.loads(data[PREFIX.size : PREFIX.size + hlen]), data[PREFIX.size + hlen :]


def _join(header, body, version=1, magic=b"TJXW"):
    h = json.dumps(header).encode()
    return PREFIX.pack(magic, version, 0, len(h)) + h + body


@pytest.fixture(scope="module")
def good(table, payload):
    return encode(payload, META, expected=table)


def _raw_edit(good, fn):
    _, _, _, hlen = PREFIX.unpack_from(good)
    h = fn(good[PREFIX.size : PREFIX.size + hlen])
    return PREFIX.pack(b"TJXW", 1, 0, len(h)) + h + good[PREFIX.size + hlen :]


def _edit(good, fn):
    header, body = _split(good)
    body = fn(header, body)
    return _join(header, body)


CASES = {
    "bad magic": lambda g: b"XXXX" + g[4:],
    "unsupported format version": lambda g: g[:4] + struct.pack("<H", 9) + g[6:],
    "header of .* exceeds bound": lambda g: g[:8] + struct.pack("<I", 10**9) + g[12:],
    "malformed header": lambda g: g[:12] + b"[" + g[13:],
    "truncated": lambda g: g[:-5],
    "trailing bytes": lambda g: g + b"\0",
    "unknown tensor": lambda g: _edit(g, lambda h, b: (h["tensors"].__setitem__("evil", {}), b)[1]),
    "missing tensor": lambda g: _edit(g, lambda h, b: (h["tensors"].pop("final_norm/scale"), b)[1]),
    "shape is": lambda g: _edit(g, lambda h, b: (h["tensors"]["embed/embedding"].__setitem__("shape", [10**12, 96]), b)[1]),
    "dtype is": lambda g: _edit(g, lambda h, b: (h["tensors"]["embed/embedding"]["arrays"]["shift"].__setitem__("dtype", "<f8"), b)[1]),
    "non-finite shift": None,
    "out of range for chunk": None,
    "not strictly increasing": None,
    "for this model": lambda g: g + b"\0" * 10**6,
    "duplicate key": lambda g: _raw_edit(g, lambda h: b'{"meta":{},' + h[1:]),
    "non-standard JSON constant": lambda g: _raw_edit(g, lambda h: b'{"x":NaN,' + h[1:]),
    "meta window": lambda g: _edit(g, lambda h, b: (h["meta"].__setitem__("window", 8), b)[1]),
}


def _corrupt_side(table, payload, field, value):
    """Overwrite the first f32 of `field` in the encoded bytes (the encoder refuses NaN itself)."""
    data = encode(payload, META, expected=table)
    header, body = _split(data)
    off = header["tensors"]["embed/embedding"]["arrays"][field]["offset"]
    body = bytearray(body)
    body[off : off + 4] = np.float32(value).tobytes()
    return _join(header, bytes(body))


@pytest.mark.parametrize("reason", list(CASES))
def test_each_bad_payload_raises_named_reason(table, payload, good, reason):
    make = CASES[reason]
    if reason == "non-finite shift":
        data = _corrupt_side(table, payload, "shift", np.nan)
    elif reason == "out of range for chunk":  # twelve-bit can express 4095 >= chunk of 3072
        tp = payload["embed/embedding"]
        idx = np.array(tp.idx)
        idx[0, -1] = 3071
        data = bytearray(encode({**payload, "embed/embedding": tp._replace(idx=idx)}, META, expected=table,
                                index_coding="twelve-bit"))
        header, body = _split(bytes(data))
        off = header["tensors"]["embed/embedding"]["arrays"]["idx"]["offset"]
        body = bytearray(body)
        body[off + 94] = 0xFF  # high byte of the last 12-bit index of chunk 0 -> 0xFFx > 3071
        data = _join(header, bytes(body))
    elif reason == "not strictly increasing":
        tp = payload["embed/embedding"]
        data = encode(payload, META, expected=table, index_coding="twelve-bit")
        header, body = _split(data)
        off = header["tensors"]["embed/embedding"]["arrays"]["idx"]["offset"]
        body = bytearray(body)
        body[off : off + 3] = bytes([5, 0, 0])  # first pair becomes (5, 0)
        data = _join(header, bytes(body))
    else:
        data = make(good)
    with pytest.raises(PayloadError, match=reason):
        decode(data, table, expected_meta={"window": 7})


def test_encoder_rejects_its_own_bad_input(table, payload):
    tp = payload["embed/embedding"]
    bad_codes = np.array(tp.codes)
    bad_codes[0, 0] = 4
    with pytest.raises(ValueError, match="code 4"):
        encode({"embed/embedding": tp._replace(codes=bad_codes)}, META, expected=table)
    unsorted = np.array(tp.idx)
    unsorted[0] = unsorted[0, ::-1]
    with pytest.raises(ValueError, match="strictly increasing"):
        encode({"embed/embedding": tp._replace(idx=unsorted)}, META, expected=table)
    with pytest.raises(ValueError, match="non-finite scale"):
        encode({"embed/embedding": tp._replace(scale=np.float32(np.inf))}, META, expected=table)


# --- sizes on the real 72B shapes --------------------------------------------------------------


def test_covenant_72b_bits_per_param_and_ratio():
    report = size_report(covenant_72b_table(), META)
    assert report.params == 70_599_843_840  # SPEC sec. 7: 70.6B tied
    assert report.bits_per_param <= 0.16
    assert report.ratio_vs_reference <= 0.5
    twelve = size_report(covenant_72b_table(), META, index_coding="twelve-bit")
    assert twelve.bits_per_param > report.bits_per_param


def test_analytic_size_matches_real_encode_of_real_shaped_layer():
    """One real 72B layer's attention + w_down (8192 x 28672) and norms, encoded for real."""
    full = covenant_72b_table(n_layers=1)
    names = ["layers/attn_norm/scale", "layers/attn/wk", "layers/attn/wv", "layers/mlp/w_down", "final_norm/scale"]
    table = {n: full[n] for n in names}
    pay = random_payload(np.random.default_rng(5), table)
    for coding in ("elias-fano", "twelve-bit"):
        data = encode(pay, META, expected=table, index_coding=coding)
        assert len(data) == encoded_size(table, META, index_coding=coding)
        assert len(data) <= max_payload_bytes(table)
    # 64 B of Elias-Fano + 16 B of codes per 4096-element chunk
    w_down = size_report({"layers/mlp/w_down": full["layers/mlp/w_down"]}, {})
    assert w_down.chunks == 57344
    assert abs(w_down.encoded_bytes - 80 * w_down.chunks) < 2048
    out, _ = decode(data, table)
    _assert_same(pay, out)


# --- side values that are each finite but decode to inf (issue 22) ------------------------------


@pytest.fixture(scope="module")
def real_layer():
    """A real compressed payload of one stacked tensor and its table."""
    from templar_jax.sparseloco import compress_tensor

    shape = (2, 128, 192)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    return expected_table({"layers/attn/wq": shape}), {"layers/attn/wq": compress_tensor(x, batch_ndim=1)}


def test_overflowing_decoded_values_are_rejected(real_layer):
    from templar_jax.wire.synthetic import overflow_payload

    table, payload = real_layer
    decode(encode(payload, META, expected=table), table)  # the real one passes
    bad = overflow_payload(payload)
    tp = bad["layers/attn/wq"]
    assert np.isfinite(tp.shift).all() and np.isfinite(tp.lut).all()
    with np.errstate(over="ignore"):
        assert not np.isfinite(tp.lut + tp.shift[..., None]).any(), "each value decodes to inf"
    with pytest.raises(PayloadError, match="layers/attn/wq: lut \\+ shift overflows float32"):
        decode(encode(bad, META, expected=table), table)


def test_values_whose_norm_overflows_are_rejected_and_the_bound_is_tight(real_layer):
    """Finite decoded values whose squares sum past float32 (an infinite clip norm) are
    rejected; just under the bound they pass."""
    from templar_jax.wire.format import NORM_SQ_BOUND

    table, payload = real_layer
    tp = payload["layers/attn/wq"]
    n = np.asarray(tp.idx)[0].size  # values per reference tensor
    edge = np.float32(np.sqrt(NORM_SQ_BOUND / n))
    for peak, ok in ((edge * np.float32(0.999), True), (edge * np.float32(1.01), False)):
        shift = np.array([0.0, peak], np.float32)  # layer 1 only
        lut = np.zeros_like(np.asarray(tp.lut))
        data = encode({"layers/attn/wq": tp._replace(shift=shift, lut=lut)}, META, expected=table)
        if ok:
            decode(data, table)
            vals = np.full(n, peak, np.float32)
            assert np.isfinite(np.sum(vals * vals, dtype=np.float32))
        else:
            with pytest.raises(PayloadError, match="layers/attn/wq: decoded value .* overflows the norm"):
                decode(data, table)
