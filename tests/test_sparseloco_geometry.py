"""SPEC 2.1/2.2 geometry: split(), k clamping, chunk layout against the literal tile loops."""

import numpy as np
import pytest

from sparseloco_reference import ref_chunks, ref_k, ref_split
from templar_jax.sparseloco import chunk_geometry, split
from templar_jax.sparseloco.chunking import from_chunks, to_chunks
from templar_jax.sparseloco.geometry import CompressionConfigError, tensor_geometry
from templar_jax.sparseloco.tree import batch_dims_from_names, flatten, unflatten


@pytest.mark.parametrize("n, expected", [
    (8192, 64), (28672, 64), (1024, 64), (262144, 64), (50, 50), (97, 1), (2816, 64),
    (64, 64), (1, 1), (96, 48), (4000, 50), (2 * 67, 2),
])
def test_split_pinned(n, expected):
    assert split(n) == expected == ref_split(n)


@pytest.mark.parametrize("topk, size, k", [(64, 4096, 64), (64, 64, 64), (64, 50, 50),
                                           (64, 49, 48), (64, 3, 2), (7, 4096, 6), (1, 4096, 2)])
def test_k_clamped_and_even(topk, size, k):
    assert ref_k(topk, size) == k
    assert chunk_geometry((size,), topk=topk).k == k


@pytest.mark.parametrize("shape", [(128, 256), (50, 97), (97,), (2816,), (192, 2816), (3, 130)])
def test_chunk_layout_matches_tile_loops(shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    geom = chunk_geometry(shape)
    chunks = np.asarray(to_chunks(x[None], geom))[0]
    np.testing.assert_array_equal(chunks, ref_chunks(x))
    assert chunks.shape == (geom.num_chunks, geom.chunk_size)
    np.testing.assert_array_equal(np.asarray(from_chunks(chunks[None], geom))[0], x)


def test_geometry_of_72b_shapes():
    g = chunk_geometry((8192, 28672))
    assert (g.tile, g.grid, g.num_chunks, g.chunk_size, g.k) == ((64, 64), (128, 448), 57344, 4096, 64)
    assert chunk_geometry((8192,)).num_chunks == 128


def test_bad_ranks_are_typed_errors():
    with pytest.raises(CompressionConfigError):
        tensor_geometry((2, 3, 4, 5), 1)
    with pytest.raises(CompressionConfigError):
        tensor_geometry((4,), 1)


def test_tree_helpers_roundtrip_and_batch_dims():
    tree = {"embed": {"embedding": 1}, "layers": {"attn": {"wq": 2}}, "final_norm": {"scale": 3}}
    flat = flatten(tree)
    assert flat == {"embed/embedding": 1, "layers/attn/wq": 2, "final_norm/scale": 3}
    assert unflatten(flat) == tree
    assert batch_dims_from_names(tree) == {"embed/embedding": 0, "layers/attn/wq": 1,
                                           "final_norm/scale": 0}
