"""Rebuild the final global model of a local demo run and save it as an orbax checkpoint.

The neurons do not write checkpoints of their own yet, but the leader validator publishes, for
every window, the exact payload bytes it aggregated (`aggregator-{w}-v{version}`). Starting from
the run's initial params (seed from the run version) and replaying those objects in window order
gives the validator's params bit for bit (`GlobalModel.replay`, the same path a restarted neuron
takes). The validator also logs a digest of its params after every window; the rebuilt params
are checked against the last one, so a wrong run config (`config`/`overrides`) is an error, not
a silently different model.

The checkpoint goes to `run_dir/final_checkpoint/` (step = last window) in the
`LocalCheckpoints` layout with the model config in its meta, so `templar-jax eval` and
`templar-jax convert to-hf` read it without further flags.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from templar_jax.evaluate.errors import RunReplayError

log = logging.getLogger(__name__)

FINAL_CHECKPOINT_DIR = "final_checkpoint"
DEFAULT_VALIDATOR = "validator-0"  # the demo's leader (highest stake) hotkey


@dataclass(frozen=True)
class RunModel:
    """What `from_run` rebuilt and where it saved it."""

    checkpoint_dir: Path  # LocalCheckpoints root
    step: int  # = last replayed window
    start_window: int
    windows_replayed: int
    version: str
    params_digest: Optional[str]
    digest_checked: bool  # the validator logged a digest for `step` and it matched
    seq_len: int
    data_path: str
    params: Optional[dict] = None  # the rebuilt tree (None when an existing checkpoint was reused)


def is_run_dir(path: str | Path) -> bool:
    """A demo run folder: has `buckets/` (and usually `events/`), not orbax step folders."""
    return (Path(path) / "buckets").is_dir()


def _aggregator_windows(keys: Iterable[str], version: str) -> list[int]:
    pattern = re.compile(rf"aggregator-(\d+)-v{re.escape(version)}")
    return sorted(int(m.group(1)) for k in keys if (m := pattern.fullmatch(k)))


def _logged_digests(run_dir: Path) -> dict[int, str]:
    """window -> params digest the validator logged after applying that window's outer step."""
    from templar_jax.events import read_events

    out: dict[int, str] = {}
    for path in sorted((run_dir / "events").glob("validator-*.jsonl")):
        for ev in read_events(path):
            if ev.get("event") == "scores" and ev.get("params_digest"):
                out[int(ev["window"])] = str(ev["params_digest"])
    return out


def _reuse(ckpt_dir: Path, step: int, digest: Optional[str]) -> bool:
    """True when `ckpt_dir` already holds `step` saved from params with `digest`."""
    meta_file = ckpt_dir / str(step) / "meta" / "metadata"
    if digest is None or not meta_file.is_file():
        return False
    try:
        saved = json.loads(meta_file.read_text()).get("extra", {}).get("params_digest")
    except ValueError:
        return False
    return saved == digest


def _recorded_config(run_dir: Path) -> tuple[str, list[str]]:
    """The config and overrides the demo recorded in run_config.json (default: demo, none)."""
    path = run_dir / "run_config.json"
    if not path.exists():
        return "demo", []
    try:
        obj = json.loads(path.read_text())
        return str(obj["config"]), [str(o) for o in obj.get("overrides", [])]
    except (ValueError, KeyError, TypeError) as err:
        raise RunReplayError(f"{path}: unreadable ({err})") from None


def from_run(run_dir: str | Path, *, config: str | None = None, overrides: Iterable[str] | None = None,
             out_dir: str | Path | None = None, validator: str = DEFAULT_VALIDATOR,
             strict_digest: bool = True, progress: Optional[Callable[[int, int], None]] = None) -> RunModel:
    """Rebuild the final global params of the demo run in `run_dir`; save them as a checkpoint.

    config/overrides: the run config the demo ran with (`templar-jax demo --config/--set`); by
    default what the demo recorded in run_config.json. Only the keys that shape the outer step
    matter (run.version, model.*, sparseloco.*).
    strict_digest: raise when the validator's logged digest of the last window differs from the
    rebuilt params (False: log a warning and save anyway).
    Reuses an existing checkpoint of the same step and digest instead of saving again.
    """
    from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints
    from templar_jax.config import RunConfigError, load_run_config
    from templar_jax.convert.from_hf import model_config_to_json
    from templar_jax.protocol.global_model import GlobalModel
    from templar_jax.protocol.leader import read_start_window
    from templar_jax.protocol.aggregator_object import AggregatorObjectError
    from templar_jax.wire import PayloadError
    from templar_jax.storage.bucket import Bucket
    from templar_jax.storage.keys import aggregator_key

    run_dir = Path(run_dir)
    if config is None:
        config, recorded = _recorded_config(run_dir)
        overrides = recorded if overrides is None else overrides
    overrides = list(overrides or [])
    bucket_dir = run_dir / "buckets" / validator
    if not bucket_dir.is_dir():
        raise RunReplayError(f"{run_dir}: no validator bucket {bucket_dir} (is this a demo run folder?)")
    try:
        settings = load_run_config(config, list(overrides))
    except RunConfigError as err:
        raise RunReplayError(f"run config {config!r} with {list(overrides)}: {err}") from None
    version = settings.run.version
    bucket = Bucket.open(f"file://{bucket_dir.resolve()}")
    start = read_start_window(bucket, version)
    if start is None:
        found = sorted(k for k in bucket.list("start_window_v"))
        raise RunReplayError(f"{bucket_dir}: no start_window_v{version}.json (run version {version!r}); "
                             f"found {found or 'none'} - pass the run's config/overrides")
    windows = [w for w in _aggregator_windows(bucket.list("aggregator-"), version) if w >= start]
    if not windows:
        raise RunReplayError(f"{bucket_dir}: no aggregator objects of version {version!r} from window {start}")
    last = windows[-1]
    missing = sorted(set(range(start, last + 1)) - set(windows))
    if missing:
        raise RunReplayError(f"{bucket_dir}: aggregator objects of windows {missing} are missing; "
                             f"the final model cannot be rebuilt")

    logged = _logged_digests(run_dir).get(last)
    ckpt_dir = Path(out_dir) if out_dir is not None else run_dir / FINAL_CHECKPOINT_DIR
    common = dict(checkpoint_dir=ckpt_dir, step=last, start_window=start, windows_replayed=len(windows),
                  version=version, seq_len=settings.data.seq_len, data_path=settings.data.path)
    if _reuse(ckpt_dir, last, logged):
        log.info("reusing %s step %d (digest %s)", ckpt_dir, last, logged)
        return RunModel(params_digest=logged, digest_checked=True, **common)

    import jax

    # The demo's neurons run on CPU; replaying there too keeps the arithmetic (and so the
    # digest) identical even when this process has a GPU or TPU.
    with jax.default_device(jax.devices("cpu")[0]):
        model = GlobalModel(settings, pad_id=None)
        params = model.init_params()
        for i, w in enumerate(windows):
            try:
                params = model.replay(params, w, bucket.get(aggregator_key(w, version)))
            except (AggregatorObjectError, PayloadError) as err:
                raise RunReplayError(f"{bucket_dir}: aggregator object of window {w}: {err}") from None
            if progress is not None:
                progress(i + 1, len(windows))
        digest = model.params_digest(params)
    checked = logged is not None and digest is not None
    if checked and digest != logged:
        msg = (f"rebuilt params of window {last} have digest {digest}, the validator logged {logged}: "
               f"the run config (config={config!r}, overrides={list(overrides)}) differs from the run's")
        if strict_digest:
            raise RunReplayError(msg)
        log.warning("%s", msg)
        checked = False
    elif logged is None:
        log.warning("the validator logged no params digest for window %d; rebuilt params are unverified", last)

    meta = CheckpointMeta(window=last, global_step=len(windows), version=version, extra={
        "model_config": model_config_to_json(model.cfg), "source": f"demo-run:{run_dir.name}",
        "params_digest": digest, "start_window": start, "seq_len": settings.data.seq_len,
        "data_path": settings.data.path, "run_config": config, "overrides": list(overrides)})
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    with LocalCheckpoints(ckpt_dir, max_to_keep=None, async_save=False) as ckpts:
        if last in ckpts.all_steps():  # same step, other params (e.g. other overrides): replace it
            import shutil

            shutil.rmtree(ckpts.step_dir(last))
            ckpts.reload()
        ckpts.save(last, params, meta=meta)
        ckpts.wait()
    log.info("saved the final model of %s (windows %d..%d) to %s", run_dir, start, last, ckpt_dir)
    return dataclasses.replace(RunModel(params_digest=digest, digest_checked=checked, **common), params=params)
