"""The aggregator object written part by part (payloads copied from files in blocks) is the same
bytes as the one encoded in memory, and a payload file that changes size is caught."""

import io

import pytest

from templar_jax.protocol.aggregator_object import (
    AggregatorObjectError, decode_aggregator, encode_aggregator, write_aggregator)


def test_written_from_files_and_bytes_equals_the_encoded_object(tmp_path):
    payloads = {7: b"seven" * 1000, 2: b"", 3: bytes(range(256)) * 50}
    (tmp_path / "7").write_bytes(payloads[7])
    (tmp_path / "3").write_bytes(payloads[3])
    sources = {7: tmp_path / "7", 2: payloads[2], 3: tmp_path / "3"}
    out = io.BytesIO()
    written = write_aggregator(out, 5, sources, block=1000)  # payloads longer than one block
    assert out.getvalue() == encode_aggregator(5, payloads)
    assert written == len(out.getvalue())
    assert decode_aggregator(out.getvalue(), window=5) == payloads


def test_a_payload_file_that_changes_size_while_written_is_an_error(tmp_path):
    path = tmp_path / "1"
    path.write_bytes(b"x" * 100)

    class Growing(io.BytesIO):  # the file grows after its size went into the header
        def write(self, data):
            if not path.read_bytes().endswith(b"y"):
                path.write_bytes(b"x" * 100 + b"y")
            return super().write(data)

    with pytest.raises(AggregatorObjectError, match="uid 1 .* was 100 bytes, copied 101"):
        write_aggregator(Growing(), 0, {1: path})
