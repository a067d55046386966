"""The demo report's compute share per window (both modes) and the phase timeline."""

from templar_jax.demo.report import collect, compute_share_rows, write_report


def _events():
    out = [{"t": 0.0, "role": "validator", "uid": 0, "event": "scores", "window": 3, "heldout_loss": 8.0,
            "uids": {}}]
    # window 3: synchronous (training stopped for 1 s of communication); window 4: overlapped
    for uid in (1, 2):
        out.append({"t": 1.0, "role": "miner", "uid": uid, "event": "window", "window": 3, "train_loss": 7.0,
                    "compute_s": 9.0, "comm_s": 1.0, "status": "ok"})
        out.append({"t": 2.0, "role": "miner", "uid": uid, "event": "window", "window": 4, "train_loss": 6.5,
                    "compute_s": 9.9, "comm_s": 0.1, "comm_hidden_s": 1.2, "overlap": True,
                    "landed_after_steps": 3, "status": "ok"})
        out.append({"t": 2.5, "role": "miner", "uid": uid, "event": "window", "window": 5, "compute_s": 0.0,
                    "comm_s": 0.3, "status": "behind"})  # no training: not in the per-window share
        for phase, lane, a, b in (("train", "main", 100.0, 109.0), ("upload", "comm", 109.5, 109.8),
                                  ("gather", "comm", 111.0, 111.5), ("land", "main", 112.0, 112.1)):
            out.append({"t": 3.0, "role": "miner", "uid": uid, "event": "phase", "window": 4, "phase": phase,
                        "start": a, "end": b, "lane": lane})
    return out


def test_compute_share_per_window_in_both_modes():
    rows = compute_share_rows(collect(_events()))
    assert [(w, mode) for w, mode, *_ in rows] == [(3, "sync"), (4, "overlap")]
    (_, _, comp3, comm3, hidden3, share3), (_, _, comp4, comm4, hidden4, share4) = rows
    assert (comp3, comm3, hidden3) == (9.0, 1.0, 0.0) and abs(share3 - 0.9) < 1e-12
    assert (comp4, hidden4) == (9.9, 1.2) and abs(comm4 - 0.1) < 1e-12 and abs(share4 - 0.99) < 1e-12


def test_report_lists_the_shares_and_draws_the_timeline(tmp_path):
    summary = collect(_events())
    assert summary["phases"][1][0] == (4, "train", 100.0, 109.0, "main")
    text = write_report(tmp_path, summary, {"windows requested": 3}).read_text()
    assert "| 3 | sync | 9.00 | 1.00 | 0.00 | 90.0% |" in text
    assert "| 4 | overlap | 9.90 | 0.10 | 1.20 | 99.0% |" in text
    assert "![timeline](timeline.png)" in text and (tmp_path / "timeline.png").stat().st_size > 5_000
