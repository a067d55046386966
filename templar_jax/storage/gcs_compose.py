"""GCS: join part objects into one with compose (tensorstore has no compose).

The parts are ordinary objects written in parallel by tensorstore; compose (google-cloud-storage,
the store's own SDK) joins at most 32 sources per call, so longer lists are joined in rounds
through intermediate objects. The final object's `updated` time is the compose time, as for a
single PUT. Blocking; the async Bucket runs it in a worker thread with its timeout and retries.
"""

from __future__ import annotations

import threading

from templar_jax.storage.errors import StorageError

MAX_COMPOSE_SOURCES = 32

_client_lock = threading.Lock()
_clients: list = []  # one google.cloud.storage.Client per process, made on first use


def _client():
    with _client_lock:
        if not _clients:
            from google.cloud import storage  # the SDK is slow to import; only large GCS uploads need it

            _clients.append(storage.Client())  # ADC (or the emulator named by STORAGE_EMULATOR_HOST)
        return _clients[0]


def _as_storage_error(what: str, e: Exception) -> StorageError:
    from google.api_core import exceptions as gexc

    transient = isinstance(e, (gexc.ServerError, gexc.TooManyRequests, ConnectionError, TimeoutError)) or (
        type(e).__module__.startswith("requests"))
    return StorageError(f"{what}: {type(e).__name__}: {str(e)[:300]}", transient=transient)


def compose(bucket: str, destination: str, sources: list[str], scratch: str, timeout: float) -> None:
    """Write `destination` as the concatenation of `sources` (full object names, in order);
    intermediate objects go under the `scratch` prefix, which the caller deletes with the parts."""
    try:
        gbucket = _client().bucket(bucket)
        level = 0
        while len(sources) > MAX_COMPOSE_SOURCES:
            joined = []
            for i in range(0, len(sources), MAX_COMPOSE_SOURCES):
                name = f"{scratch}compose-{level}-{i // MAX_COMPOSE_SOURCES:05d}"
                group = [gbucket.blob(s) for s in sources[i:i + MAX_COMPOSE_SOURCES]]
                gbucket.blob(name).compose(group, timeout=timeout)
                joined.append(name)
            sources, level = joined, level + 1
        gbucket.blob(destination).compose([gbucket.blob(s) for s in sources], timeout=timeout)
    except Exception as e:
        raise _as_storage_error(f"compose {destination}", e) from None
