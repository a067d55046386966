"""LocalChain.block_hash: defined once a block is produced, the same for every process, different
per block and per chain; a block not produced yet has no hash."""

import sqlite3

import pytest

from templar_jax.chain import BlockNotProducedError, LocalChain


def test_block_hash_exists_only_for_produced_blocks(tmp_path):
    chain = LocalChain.create(tmp_path / "c.sqlite", mode="manual", block_time=1.0, blocks_per_window=5)
    first = chain.block_hash(0)
    assert first.startswith("0x") and len(first) == 66
    with pytest.raises(BlockNotProducedError, match="block 3"):
        chain.block_hash(3)
    with pytest.raises(BlockNotProducedError):
        chain.block_hash(-1)
    chain.advance(3)
    h3 = chain.block_hash(3)
    assert len({first, chain.block_hash(1), h3}) == 3
    assert LocalChain(tmp_path / "c.sqlite", hotkey="x").block_hash(3) == h3  # every process agrees
    other = LocalChain.create(tmp_path / "d.sqlite", mode="manual", block_time=1.0, blocks_per_window=5)
    assert other.block_hash(0) != first  # a per-chain salt: not computable from the number alone


def test_a_chain_created_without_a_salt_gets_one_once(tmp_path):
    path = tmp_path / "old.sqlite"
    LocalChain.create(path, mode="manual", block_time=1.0, blocks_per_window=5)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key='block_hash_salt'")
    a, b = LocalChain(path), LocalChain(path)
    assert a.block_hash(0) == b.block_hash(0) == a.block_hash(0)
