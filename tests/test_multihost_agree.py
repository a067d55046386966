"""The multi-process machinery without processes: two `Agreement`s (process 0 and 1) over an
in-memory key-value store in threads, the agreed chain, and the heartbeat watchdog."""

import threading
import time
import types

import pytest

from templar_jax.multihost import AgreedChain, Agreement, MultihostError, ProcessGroup, Watchdog
from templar_jax.multihost.agree import PART_BYTES


class FakeStore:
    """The subset of jax.distributed's key-value client the package uses."""

    def __init__(self):
        self.data, self.cv = {}, threading.Condition()

    def key_value_set(self, key, value, allow_overwrite=False):
        with self.cv:
            assert allow_overwrite or key not in self.data, key
            self.data[key] = value
            self.cv.notify_all()

    key_value_set_bytes = key_value_set

    def blocking_key_value_get(self, key, timeout_ms):
        with self.cv:
            if not self.cv.wait_for(lambda: key in self.data, timeout_ms / 1000):
                raise TimeoutError(key)
            return self.data[key]

    blocking_key_value_get_bytes = blocking_key_value_get

    def key_value_try_get(self, key):
        with self.cv:
            if key not in self.data:
                raise KeyError(key)
            return self.data[key]

    def key_value_delete(self, key):
        with self.cv:
            self.data.pop(key, None)


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} {b}")


def run_both(leader_steps, follower_steps):
    """Each list of callables runs in order on its own process's Agreement; returns results
    (or the exception raised) per step."""
    store = FakeStore()
    parties = {0: Agreement(store, 0, 2), 1: Agreement(store, 1, 2, wait_s=5)}
    out = {0: [], 1: []}

    def play(pid, steps):
        for step in steps:
            try:
                out[pid].append(step(parties[pid]))
            except Exception as err:
                out[pid].append(err)

    follower = threading.Thread(target=play, args=(1, follower_steps))
    follower.start()
    play(0, leader_steps)
    follower.join(10)
    return out, store


def test_process_0_decides_and_the_others_receive_in_order():
    big = bytes(range(256)) * (2 * PART_BYTES // 256 + 7)  # three parts
    never = lambda: pytest.fail("a follower never runs the decision")  # noqa: E731

    def nested(a):  # an agreed operation whose parts are agreed calls too (process 0 only)
        return a.value("outer", lambda: a.value("inner", lambda: 41) + 1)

    def boom():
        raise ValueError("bad window 7")

    def odd():
        raise NeedsTwo(1, 2)

    leader = [lambda a: a.value("a", lambda: {"x": 1.5, "t": (1, 2)}), lambda a: a.blob("b", lambda: big),
              nested, lambda a: a.value("c", boom), lambda a: a.value("d", odd), lambda a: a.value("e", lambda: 3)]
    follower = [lambda a: a.value("a", never), lambda a: a.blob("b", never), lambda a: a.value("outer", never),
                lambda a: a.value("c", never), lambda a: a.value("d", never), lambda a: a.value("e", never)]
    out, store = run_both(leader, follower)
    for results in out.values():
        assert results[0] == {"x": 1.5, "t": [1, 2]}  # as JSON reads it back, on every process
        assert results[1] == big
        assert results[2] == 42
        assert isinstance(results[3], ValueError) and str(results[3]) == "bad window 7"
        assert results[5] == 3  # the sequence stayed aligned after the nested call and the errors
    assert isinstance(out[1][4], MultihostError) and "NeedsTwo" in str(out[1][4])
    assert isinstance(out[0][4], NeedsTwo)


def test_process_0_forgets_old_decisions():
    store = FakeStore()
    leader = Agreement(store, 0, 2, keep=2)
    for i in range(4):
        leader.blob(f"d{i}", lambda: b"x" * (PART_BYTES + 1))  # two parts each
    assert sorted(store.data) == ["templar/agree/2", "templar/agree/2/0", "templar/agree/2/1",
                                  "templar/agree/3", "templar/agree/3/0", "templar/agree/3/1"]


def test_a_follower_without_a_decision_fails_naming_the_phase():
    follower = Agreement(FakeStore(), 1, 2, wait_s=0.2)
    with pytest.raises(MultihostError, match="process 1, phase 'chain.current_block': no decision"):
        follower.value("chain.current_block", lambda: 0)


def test_a_follower_whose_code_path_diverged_fails_naming_both_decisions():
    out, _ = run_both([lambda a: a.value("bucket.put aggregator-3", lambda: None)],
                      [lambda a: a.value("chain.set_weights", lambda: None)])
    assert out[0] == [None]
    assert isinstance(out[1][0], MultihostError)
    assert "process 1, decision 0: process 0 made 'bucket.put aggregator-3' where this process expected " \
           "'chain.set_weights'" in str(out[1][0])


def test_agreed_chain_reads_once_and_writes_once_on_process_0(tmp_path):
    from templar_jax.chain.local import LocalChain

    LocalChain.create(tmp_path / "c.sqlite", block_time=1000.0, blocks_per_window=3, mode="manual")
    real = LocalChain(tmp_path / "c.sqlite", hotkey="m")
    real.register("v", stake=5.0)
    real.register("m", stake=0.0)

    def steps(opened):
        return [lambda a: (a.__setattr__("chain", AgreedChain.open(a, opened)), a.chain.blocks_per_window)[1],
                lambda a: a.chain.metagraph(), lambda a: a.chain.commit("hello"), lambda a: a.chain.commitments(),
                lambda a: a.chain.current_window(), lambda a: a.chain.my_uid()]

    out, _ = run_both(steps(lambda: real), steps(lambda: pytest.fail("only process 0 opens the chain")))
    assert out[0] == out[1]
    assert out[0][0] == 3 and out[0][1].leader_uid == 0 and out[0][3] == {1: "hello"} and out[0][5] == 1
    assert out[1][1] == real.metagraph()


def test_watchdog_ends_a_process_whose_peer_went_silent():
    store, exits, messages = FakeStore(), [], []
    peer = Watchdog(store, ProcessGroup(1, 2, "hostB"), lambda: "train window 3", interval_s=0.05, timeout_s=10)
    peer.beat_now()  # one heartbeat, then silence (killed)
    me = Watchdog(store, ProcessGroup(0, 2, "hostA"), lambda: "gather window 3", interval_s=0.05,
                  timeout_s=0.4, exit=exits.append)
    me.fail = lambda reason, fail=me.fail: (messages.append(reason), fail(reason))
    t0 = time.monotonic()
    me.start()
    me.join(5)
    assert exits == [70] and time.monotonic() - t0 < 2
    assert "process 1 on hostB (phase 'train window 3') sent no heartbeat" in messages[0]


def test_watchdog_stays_quiet_while_peers_beat():
    store, exits = FakeStore(), []
    a = Watchdog(store, ProcessGroup(0, 2, "a"), lambda: "x", interval_s=0.05, timeout_s=0.3, exit=exits.append)
    b = Watchdog(store, ProcessGroup(1, 2, "b"), lambda: "y", interval_s=0.05, timeout_s=0.3, exit=exits.append)
    for w in (a, b):
        w.beat_now()
        w.start()
    time.sleep(0.8)
    a.stop(), b.stop()
    assert exits == []


def _demo_payloads():
    """The demo model and two encoded random payloads of window 4 (uids 2 and 5)."""
    import numpy as np

    from templar_jax.config import load_run_config
    from templar_jax.protocol.global_model import GlobalModel
    from templar_jax.wire.synthetic import random_payload

    model = GlobalModel(load_run_config("demo", []), pad_id=None)
    raw = {uid: model.codec.encode(random_payload(np.random.default_rng(uid), model.expected, chunk=model.codec.chunk,
                                                  topk=model.codec.topk),
                                   {"window": 4, "uid": uid, "version": model.version, "global_step": 1})
           for uid in (2, 5)}
    return model, raw


@pytest.mark.parametrize("raw_kind", [dict, types.MappingProxyType])  # in memory; read-only (a spool's view)
def test_a_gather_is_made_on_process_0_and_decoded_alike_elsewhere(raw_kind):
    import numpy as np

    from templar_jax.neurons.agreed_gather import agreed_gather
    from templar_jax.neurons.exchange import WindowPayloads

    model, raw = _demo_payloads()

    def fetch(keep_raw):
        assert keep_raw  # process 0 keeps the bytes to hand them on
        got = WindowPayloads(4, failed={3: "too_late", 7: "invalid: bad magic"}, invalid={7},
                             stored_at={2: 10.5, 5: 11.25}, raw=raw_kind(dict(raw)))
        got.valid = {uid: model.decode_payload(b, window=4, uid=uid) for uid, b in raw.items()}
        return got

    def step(a):
        return agreed_gather(a, 4, fetch if a.leader else None, codec=model.codec, version=model.version,
                             keep_raw=False)

    out, _ = run_both([step], [step])
    mine, theirs = out[0][0], out[1][0]
    assert (theirs.window, theirs.failed, theirs.invalid, theirs.stored_at, theirs.raw) == \
        (mine.window, mine.failed, mine.invalid, mine.stored_at, {}) == (4, {3: "too_late", 7: "invalid: bad magic"},
                                                                        {7}, {2: 10.5, 5: 11.25}, {})
    assert sorted(theirs.valid) == sorted(mine.valid) == [2, 5]
    for uid in (2, 5):
        for name, tensor in mine.valid[uid].items():
            for a, b in zip(tensor, theirs.valid[uid][name]):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_follower_with_a_spool_keeps_the_gathered_payloads_on_its_disk(tmp_path):
    import numpy as np

    from templar_jax.neurons.agreed_gather import agreed_gather
    from templar_jax.neurons.exchange import WindowPayloads
    from templar_jax.neurons.spool import PayloadSpool, SpooledPayload

    model, raw = _demo_payloads()

    def fetch(keep_raw):
        got = WindowPayloads(4, stored_at={2: 1.0, 5: 2.0}, raw=dict(raw))
        got.valid = {uid: model.decode_payload(b, window=4, uid=uid) for uid, b in raw.items()}
        return got

    spool = PayloadSpool(tmp_path / "process-1" / "spool", model.codec)

    def step(a):
        return agreed_gather(a, 4, fetch if a.leader else None, codec=model.codec, version=model.version,
                             keep_raw=True, spool=None if a.leader else spool)

    out, _ = run_both([step], [step])
    mine, theirs = out[0][0], out[1][0]
    assert all(isinstance(p, SpooledPayload) for p in theirs.valid.values())
    assert sorted((tmp_path / "process-1" / "spool" / "window-4").iterdir()) == \
        [tmp_path / "process-1" / "spool" / "window-4" / f"{u}.tjxw" for u in (2, 5)]
    assert dict(theirs.raw) == raw and theirs.stored_at == mine.stored_at
    for uid in (2, 5):
        for name, tensor in mine.valid[uid].items():
            for a, b in zip(tensor, theirs.valid[uid][name]):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_process_that_raises_ends_the_others_at_their_next_beat():
    store, exits, messages = FakeStore(), [], []
    peer = Watchdog(store, ProcessGroup(1, 2, "hostB"), lambda: "outer step window 2", interval_s=0.05, timeout_s=60)
    peer.beat_now()
    me = Watchdog(store, ProcessGroup(0, 2, "hostA"), lambda: "gather window 2", interval_s=0.05,
                  timeout_s=60, exit=exits.append)
    me.fail = lambda reason, fail=me.fail: (messages.append(reason), fail(reason))
    me.start()
    peer.report_failure("ValueError: boom")
    me.join(5)
    assert exits == [70]
    assert messages == ["process 1 on hostB (phase 'outer step window 2') failed: ValueError: boom"]


def test_the_validators_state_and_secret_are_read_and_written_on_process_0_only(tmp_path):
    from templar_jax.gauntlet.state import ValidatorState, load_state, save_state
    from templar_jax.neurons.validator_files import agreed_secret, agreed_state, save_state_once

    save_state(ValidatorState(window=7), tmp_path / "p0" / "state.json")

    def steps(folder):  # each process its own folder, as on hosts that share none
        return [lambda a: agreed_state(a, folder / "state.json"), lambda a: agreed_secret(a, folder / "secret"),
                lambda a: save_state_once(a, ValidatorState(window=8), folder / "state.json")]

    out, _ = run_both(steps(tmp_path / "p0"), steps(tmp_path / "p1"))
    assert out[0][0] == out[1][0] == ValidatorState(window=7)
    assert out[0][1] == out[1][1] == (tmp_path / "p0" / "secret").read_bytes() and len(out[1][1]) == 32
    assert load_state(tmp_path / "p0" / "state.json").window == 8
    assert not (tmp_path / "p1").exists()  # process 1 never touched its run folder


def test_gather_from_all_hands_every_processs_value_to_all():
    never = lambda: pytest.fail("a follower never runs the decision")  # noqa: E731
    out, store = run_both([lambda a: a.gather_from_all("misses", [], wait_s=5), lambda a: a.value("next", lambda: 1)],
                          [lambda a: a.gather_from_all("misses", [3, 4], wait_s=5), lambda a: a.value("next", never)])
    assert out[0] == out[1] == [[[], [3, 4]], 1]  # and the sequence stayed aligned
    assert not [k for k in store.data if "/from/" in k]  # process 0 deleted the reports it read


def test_gather_from_all_names_a_silent_process():
    leader = Agreement(FakeStore(), 0, 2)
    t0 = time.monotonic()
    with pytest.raises(MultihostError, match="process 0, phase 'misses': no report from process 1"):
        leader.gather_from_all("misses", [], wait_s=0.2)
    assert time.monotonic() - t0 < 2


def test_gather_from_all_names_a_report_for_another_step():
    out, _ = run_both([lambda a: a.gather_from_all("misses window 3", [], wait_s=5)],
                      [lambda a: a.gather_from_all("misses window 4", [], wait_s=5)])
    assert isinstance(out[0][0], MultihostError) and isinstance(out[1][0], MultihostError)
    assert "process 1 reported for 'misses window 4' where process 0 expected 'misses window 3'" in str(out[0][0])


def test_every_host_reads_take_process_0s_bytes_for_a_payload_not_readable_here(tmp_path):
    import numpy as np

    from templar_jax.config import load_run_config
    from templar_jax.neurons.agreed_gather import agreed_gather
    from templar_jax.neurons.exchange import WindowPayloads
    from templar_jax.neurons.host_reads import HostReads
    from templar_jax.protocol.global_model import GlobalModel
    from templar_jax.storage.bucket import Bucket
    from templar_jax.storage.keys import gradient_key
    from templar_jax.wire.synthetic import random_payload

    model = GlobalModel(load_run_config("demo", []), pad_id=None)
    raw = {uid: model.codec.encode(random_payload(np.random.default_rng(uid), model.expected, chunk=model.codec.chunk,
                                                  topk=model.codec.topk),
                                   {"window": 4, "uid": uid, "version": model.version, "global_step": 1})
           for uid in (2, 5)}
    bucket = Bucket.open(f"file://{tmp_path}/peer-2")
    bucket.put(gradient_key(4, 2, model.version), raw[2])

    def fetch(keep_raw):
        got = WindowPayloads(4, failed={3: "too_late"}, stored_at={2: 1.0, 5: 2.0}, raw=dict(raw))
        got.valid = {uid: model.decode_payload(b, window=4, uid=uid) for uid, b in raw.items()}
        return got

    def step(a):  # uid 5's bucket cannot be opened on process 1: its bytes come from process 0
        reads = HostReads({2: bucket} if not a.leader else {}, deadline_s=10.0, in_flight=4)
        return agreed_gather(a, 4, fetch if a.leader else None, codec=model.codec, version=model.version,
                             keep_raw=True, reads=reads)

    out, store = run_both([step], [step])
    mine, theirs = out[0][0], out[1][0]
    sent = b"".join(v for v in store.data.values() if isinstance(v, bytes))
    assert b"gather window 4 uid 5 from process 0" in sent and b"uid 2 from" not in sent  # uid 5's bytes alone
    assert (theirs.failed, theirs.stored_at, dict(theirs.raw)) == (mine.failed, mine.stored_at, dict(mine.raw))
    assert list(theirs.valid) == list(mine.valid) == [2, 5]
    for uid in (2, 5):
        for name, tensor in mine.valid[uid].items():
            for a, b in zip(tensor, theirs.valid[uid][name]):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gather_from_all_over_three_processes_keeps_process_order():
    store = FakeStore()
    parties = [Agreement(store, i, 3, wait_s=5) for i in range(3)]
    out = {}

    def play(i):
        time.sleep(0.05 * (2 - i))  # process 2 reports first
        out[i] = parties[i].gather_from_all("misses", {"p": i}, wait_s=5)

    threads = [threading.Thread(target=play, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    play(0)
    for t in threads:
        t.join(10)
    assert out[0] == out[1] == out[2] == [{"p": 0}, {"p": 1}, {"p": 2}]
