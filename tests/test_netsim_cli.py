"""`templar-jax simulate`: the Covenant-72B setup, a what-if grid, JSON lines and a Gantt PNG."""

import json

from templar_jax.cli import main


def test_covenant_72b_prints_utilization_beside_the_published_figure(capsys):
    assert main(["simulate", "--model", "covenant-72b", "--windows", "4", "--assumptions"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("covenant-72b: 20 peers")]
    assert [ln.split("overlap ")[1].split(":")[0] for ln in lines] == ["none", "full"]
    assert all("Covenant published 94.5%" in ln for ln in lines)
    assert "Assumptions" in out and "uploads" in out


def test_whatif_grid_and_outputs(tmp_path, capsys):
    assert main(["simulate", "--model", "covenant-72b", "--windows", "3", "--whatif", "--whatif-peers", "20", "100",
                 "--whatif-mbit", "100", "10000", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert table.count("\n| 20 |") + table.count("\n| 100 |") == 4
    rows = [json.loads(ln) for ln in (tmp_path / "whatif.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["overlap"] for r in rows} == {"none", "full"}
    slow = [r for r in rows if r["bandwidth_bps"] == 1e8]
    assert all(r["bottleneck"] == "upload window (uploads late)" for r in slow)  # 1.38 GB at 100 Mbit/s > 70 s

    assert main(["simulate", "--model", "covenant-72b", "--windows", "4", "--overlap", "full",
                 "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "sim-full.jsonl").read_text().splitlines()
    kinds = [json.loads(ln)["kind"] for ln in lines]
    assert kinds.count("peer_window") == 20 * 4 and kinds[-1] == "summary"
    assert (tmp_path / "gantt-full.png").read_bytes()[:4] == b"\x89PNG"
