"""`templar-jax gauntlet show` on a state file written by the scoring code."""

import json

from templar_jax import cli
from templar_jax.gauntlet import GauntletConfig, ValidatorState, save_state, score_window
from templar_jax.gauntlet.window import Evaluation


def test_show_prints_scores_weights_and_rejects_corrupt_file(tmp_path, capsys):
    cfg = GauntletConfig()
    state = ValidatorState()
    for w in range(3):
        state = score_window(state, w, [Evaluation(4, 3.0, 2.8, 3.0, 2.9, 0.0),
                                        Evaluation(7, 3.0, 3.0, 3.0, 2.95, 0.0)], cfg, missing=[9])
    path = tmp_path / "g.json"
    save_state(state, path)
    assert cli.main(["gauntlet", "show", "--state", str(path), "--burn-fraction", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["window"] == 2 and [r["uid"] for r in out["peers"]][0] == 4
    assert out["weights"] == {"4": 1.0} and out["gather"] == [4, 7, 9]
    assert cli.main(["gauntlet", "show", "--state", str(path)]) == 0
    assert "Gauntlet state after window 2" in capsys.readouterr().out
    path.write_text("{broken")
    assert cli.main(["gauntlet", "show", "--state", str(path)]) == 1
    assert "not valid JSON" in capsys.readouterr().out
