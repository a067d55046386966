"""validator.mmap_threshold_bytes: checked by the run config, applied through glibc's mallopt."""

import ctypes
import ctypes.util

import pytest

from templar_jax.config import load_run_config
from templar_jax.malloc_threshold import GLIBC_MAX_THRESHOLD, set_mmap_threshold


def test_default_is_one_mib_and_bad_values_name_the_key():
    assert load_run_config("demo").validator.mmap_threshold_bytes == 1 << 20
    assert load_run_config("demo", ["validator.mmap_threshold_bytes=0"]).validator.mmap_threshold_bytes == 0
    for bad in (-1, GLIBC_MAX_THRESHOLD + 1):
        with pytest.raises(ValueError, match="validator.mmap_threshold_bytes"):
            load_run_config("demo", [f"validator.mmap_threshold_bytes={bad}"])


def test_zero_leaves_malloc_alone_and_too_large_is_refused():
    assert set_mmap_threshold(0) is False
    with pytest.raises(ValueError, match="maximum"):
        set_mmap_threshold(GLIBC_MAX_THRESHOLD + 1)


@pytest.mark.skipif(not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_info"), reason="not glibc")
def test_applied_on_glibc():
    assert set_mmap_threshold(1 << 20) is True
