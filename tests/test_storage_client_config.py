"""The run config's storage.client (BucketConfig + TransferConfig) and peers.decode_workers reach
the buckets a neuron opens (its own and the peers') and the wire decoder."""

from types import SimpleNamespace

import numpy as np
import pytest

from templar_jax.config import RunConfigError, load_run_config
from templar_jax.neurons.network import PeerDirectory, open_my_bucket
from templar_jax.protocol.codec import PayloadCodec
from templar_jax.storage.bucket import BucketConfig
from templar_jax.storage.credentials import file_commitment
from templar_jax.storage.transfer import MiB, TransferConfig
from templar_jax.wire import encode, expected_table
from templar_jax.wire.synthetic import random_payload

OVERRIDES = ["storage.client.request_timeout_s=120", "storage.client.retries=5",
             "storage.client.transfer.part_bytes=8388608", "storage.client.transfer.part_concurrency=3",
             "peers.decode_workers=2", "peers.gather_in_flight=4"]


def test_client_section_reads_into_the_storage_types():
    cfg = load_run_config("demo", OVERRIDES)
    assert cfg.storage.client == BucketConfig(request_timeout_s=120.0, retries=5, transfer=TransferConfig(
        part_bytes=8 * MiB, part_concurrency=3))
    assert (cfg.peers.decode_workers, cfg.peers.gather_in_flight) == (2, 4)
    assert load_run_config("demo").storage.client == BucketConfig()  # optional: the defaults


@pytest.mark.parametrize("override, message", [
    ("storage.client.transfer.part_bytes=1024", "part_bytes 1024 < 5242880"),
    ("storage.client.retries=-1", "retries must be >= 0"),
    ("storage.client.max_concurrency=0", "max_concurrency must be >= 1"),
    ("storage.client.transfer.chunk=3", "unknown key 'storage.client.transfer.chunk'"),
    ("peers.decode_workers=0", "peers.decode_workers must be >= 1"),
    ("peers.gather_in_flight=0", "peers.gather_in_flight must be >= 1"),
])
def test_bad_client_values_name_the_key(override, message):
    with pytest.raises(RunConfigError, match=message):
        load_run_config("demo", [override])


def test_my_bucket_and_the_peers_buckets_use_the_client_config(tmp_path):
    client = load_run_config("demo", OVERRIDES).storage.client
    mine, _ = open_my_bucket(f"file://{tmp_path}/mine", config=client)
    assert mine.config == client
    (tmp_path / "peer").mkdir()
    chain = SimpleNamespace(commitments=lambda: {7: file_commitment(str(tmp_path / "peer"))})
    assert PeerDirectory(chain, client).refresh()[7].config == client
    assert PeerDirectory(chain).refresh()[7].config == BucketConfig()


def test_codec_decodes_with_its_workers_to_the_same_payload():
    table = expected_table({"a": (256, 128), "layers/b": (2, 128, 64)})
    payload = random_payload(np.random.default_rng(0), table)
    data = encode(payload, {"window": 1, "uid": 2, "version": "v"}, expected=table)
    one, two = (PayloadCodec(table, chunk=64, topk=64, index_coding="elias-fano", workers=w) for w in (1, 2))
    got1, got2 = one.decode(data)[0], two.decode(data)[0]
    for name in payload:
        for a, b, c in zip(got1[name], got2[name], payload[name]):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
