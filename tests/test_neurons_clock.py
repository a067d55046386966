"""WindowClock: the window's phases from the chain's block timestamps, with today's margins
(train stops 1 s before the window ends; gather 0.3 s after the upload window closes)."""

import time

import pytest

from templar_jax.chain.local import LocalChain
from templar_jax.neurons.clock import GATHER_MARGIN_S, TRAIN_MARGIN_S, WindowClock, wait_until
from templar_jax.storage.timing import UploadWindow


@pytest.fixture
def chain(tmp_path):
    # blocks of 2 s from t=1000, 5 blocks per window: window W starts at 1000 + 10 W
    return LocalChain.create(tmp_path / "chain.sqlite", block_time=2.0, blocks_per_window=5,
                             genesis_time=1000.0, clock=lambda: 1037.0)


def test_phases_of_a_window(chain):
    clock = WindowClock(chain, upload_span_s=4.0)
    assert (TRAIN_MARGIN_S, GATHER_MARGIN_S) == (1.0, 0.3)
    assert clock.current_window() == 3
    p = clock.phases(3)
    assert p.window == 3 and p.start == 1030.0
    assert p.train_deadline == 1040.0 - 1.0
    assert p.upload_open == 1040.0 and p.upload_close == 1044.0
    assert p.gather_at == pytest.approx(1044.3)
    assert p.start < p.train_deadline < p.upload_open < p.upload_close < p.gather_at
    assert clock.upload_window(3) == UploadWindow.after_block(1040.0, late_grace_s=4.0)
    assert clock.train_deadline(3) == p.train_deadline


def test_margins_are_parameters(chain):
    p = WindowClock(chain, upload_span_s=2.0, train_margin_s=3.0, gather_margin_s=1.0).phases(0)
    assert (p.train_deadline, p.upload_close, p.gather_at) == (1007.0, 1012.0, 1013.0)


def test_waits_return_at_the_phase(tmp_path):
    t0 = time.time()
    chain = LocalChain.create(tmp_path / "live.sqlite", block_time=0.05, blocks_per_window=2, genesis_time=t0)
    clock = WindowClock(chain, upload_span_s=0.1, poll_s=0.01)
    clock.wait_for_window(3)
    assert time.time() >= t0 + 0.3 and chain.current_window() >= 3
    clock.wait_for_upload(3)  # = the start of window 4
    assert time.time() >= clock.start_time(4)
    clock.wait_for_gather(4)
    assert time.time() >= clock.phases(4).gather_at
    before = time.time()
    wait_until(before - 5)  # a past time returns at once
    assert time.time() - before < 0.05
