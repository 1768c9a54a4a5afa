"""Tracking that outlives its server: what the driver writes while the MLflow tracking
server does not answer goes to a journal on local disk, and is written to MLflow, in
order, once the server answers again.

``JournaledClient`` stands in for the driver's ``MlflowClient``. Every write goes to the
server while it answers. The first write that meets a connection error starts an outage:
from then on writes are appended to the journal (``journal.jsonl``, artifacts copied
beside it) and the server is tried again with a growing pause; the first try that
succeeds replays the journal, oldest first, and ends the outage. Runs created during the
outage get a stand-in id (``journal-run-<n>``) that the replay swaps for the real one in
every later write. Reads (the control channel's) raise ``ServerAway`` while it lasts.

An outage longer than ``tracking.outage_minutes`` is ``expired``: the experiment stops
and ends with the journal on disk; ``automl-ctl replay <journal>`` writes it later
(``replay``), and running that twice writes nothing twice (``done.jsonl`` keeps what was
written).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import models

log = logging.getLogger(__name__)

JOURNAL_FILE, DONE_FILE, FILES_DIR, URI_FILE = "journal.jsonl", "done.jsonl", "files", "uri"
PENDING_RUN, PENDING_MODEL = "journal-run-", "journal-model-"
# the pause between tries while the server is away grows to this, in seconds
RETRY_MAX_SECONDS = 10.0


class ServerAway(ConnectionError):
    """A read while the tracking server does not answer."""


def connection_lost(ex: BaseException) -> bool:
    """Whether `ex` (or what caused it) says the server did not answer, rather than that
    it refused the request: refused connections, resets, timeouts, a proxy's 5xx."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = ex
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if isinstance(
            current,
            requests.exceptions.ConnectionError
            | requests.exceptions.Timeout
            | requests.exceptions.RetryError,
        ):
            return True
        current = current.__cause__ or current.__context__
    text = str(ex)
    return "Max retries exceeded" in text or "Connection aborted" in text


class JournaledClient:
    """The driver's MLflow client, with its writes journaled while the server is away."""

    def __init__(
        self,
        client: Any,
        folder: Path,
        outage_seconds: float,
        uri: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self.folder, self.uri = client, folder, uri
        self.outage_seconds, self._clock = outage_seconds, clock
        # the heartbeat thread writes too
        self._lock = threading.RLock()
        self._away_since: float | None = None
        self._next_try = 0.0
        self._pause = 1.0
        self._seq = 0
        self._ids: dict[str, str] = {}
        self.journaled = 0
        # how long the outages lasted, in seconds (for the summary)
        self.outages: list[float] = []

    # --- state -------------------------------------------------------------------------
    @property
    def away(self) -> bool:
        return self._away_since is not None

    @property
    def expired(self) -> bool:
        """The server has been away longer than the outage limit."""
        since = self._away_since
        return since is not None and self._clock() - since > self.outage_seconds

    @property
    def journal(self) -> Path:
        return self.folder / JOURNAL_FILE

    def resolve(self, text: str) -> str:
        """`text` with the stand-in ids the replay has replaced swapped for the real ones."""
        for pending, real in self._ids.items():
            text = text.replace(pending, real)
        return text

    # --- reads ---------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def read(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self.away and not self._try_flush():
                    raise ServerAway(f"the tracking server at {self.uri} does not answer")
                try:
                    return method(*args, **kwargs)
                except Exception as ex:
                    if not connection_lost(ex):
                        raise
                    self._went_away()
                    raise ServerAway(f"the tracking server at {self.uri} does not answer") from ex

        return read

    # --- writes --------------------------------------------------------------------------
    def create_run(self, experiment_id: str, **kwargs: Any) -> Any:
        return self._write("create_run", experiment_id, **kwargs)

    def log_batch(self, run_id: str, **kwargs: Any) -> None:
        self._write("log_batch", run_id, **kwargs)

    def log_metric(self, run_id: str, key: str, value: float, **kwargs: Any) -> None:
        self._write("log_metric", run_id, key, value, **kwargs)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self._write("set_tag", run_id, key, value)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._write("log_text", run_id, text, artifact_file)

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        self._write("log_dict", run_id, dictionary, artifact_file)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        self._write("log_artifacts", run_id, local_dir, artifact_path)

    def log_inputs(self, run_id: str, datasets: Any = None, **kwargs: Any) -> None:
        self._write("log_inputs", run_id, datasets, **kwargs)

    def update_run(self, run_id: str, **kwargs: Any) -> None:
        self._write("update_run", run_id, **kwargs)

    def set_terminated(self, run_id: str, status: str | None = None, **kwargs: Any) -> None:
        self._write("set_terminated", run_id, status, **kwargs)

    def log_model(self, experiment_id: str, parent_id: str, pipeline: Any, example: Any) -> str:
        """The best model (``models.log_model``); while the server is away it is pickled
        into the journal and its URI is a stand-in until the replay logs it."""
        return str(self._write("log_model", experiment_id, parent_id, pipeline, example))

    def register_model(self, name: str, model_uri: str, parent_id: str) -> None:
        """The best model in the registry (``models.register``)."""
        self._write("register_model", name, model_uri, parent_id)

    def _write(self, op: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if not self.away or self._try_flush():
                if self._ids:
                    # stand-ins a caller still holds (a run created during an outage)
                    args, kwargs = (
                        tuple(_decode(_encode(list(args)), self._ids)),
                        _decode(_encode(kwargs), self._ids),
                    )
                try:
                    return _apply(self._client, op, args, kwargs)
                except Exception as ex:
                    if not connection_lost(ex):
                        raise
                    self._went_away()
            return self._append(op, args, kwargs)

    # --- the outage ----------------------------------------------------------------------
    def _went_away(self) -> None:
        if self.away:
            return
        self._away_since = self._clock()
        self._pause = 1.0
        self._next_try = self._away_since + self._pause
        log.warning(
            "tracking server %s does not answer; the run goes on, its writes kept in %s "
            "until the server is back",
            self.uri,
            self.folder,
        )

    def _try_flush(self) -> bool:
        """Replay the journal if it is time to try; True once it is all written."""
        now = self._clock()
        if now < self._next_try:
            return False
        try:
            written = replay(self._client, self.folder, self._ids)
        except Exception as ex:
            if not connection_lost(ex):
                raise
            self._pause = min(2 * self._pause, RETRY_MAX_SECONDS)
            self._next_try = self._clock() + self._pause
            return False
        assert self._away_since is not None
        lasted = self._clock() - self._away_since
        self.outages.append(lasted)
        self._away_since = None
        # all of it is in MLflow now (the model's pickle may be large)
        shutil.rmtree(self.folder, ignore_errors=True)
        log.warning(
            "tracking server %s answers again after %.0f s; %d journaled writes replayed",
            self.uri,
            lasted,
            written,
        )
        return True

    def settle(self, wait: bool = True) -> bool:
        """Wait for an away server to take the journal, until the outage limit (`wait`
        False: one try); True when nothing is left unwritten."""
        with self._lock:
            while self.away:
                assert self._away_since is not None
                deadline = self._away_since + self.outage_seconds
                if not wait:
                    self._next_try = 0.0
                if self._try_flush():
                    break
                if not wait or self._clock() >= deadline:
                    return False
                time.sleep(max(0.0, min(self._next_try, deadline) - self._clock()))
            return True

    def _append(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / URI_FILE).exists():
            (self.folder / URI_FILE).write_text(self.uri + "\n")
        self._seq += 1
        seq = self._seq
        out: Any = None
        if op == "create_run":
            out = _PendingRun(f"{PENDING_RUN}{seq:08d}")
            kwargs = {**kwargs, "_pending": out.info.run_id}
        elif op == "log_artifacts":
            # the folder is the caller's temporary one: keep a copy
            kept = self.folder / FILES_DIR / str(seq)
            shutil.copytree(args[1], kept)
            args = (args[0], str(kept), *args[2:])
        elif op == "log_model":
            import cloudpickle

            kept = self.folder / FILES_DIR / f"{seq}.pkl"
            kept.parent.mkdir(parents=True, exist_ok=True)
            with open(kept, "wb") as f:
                cloudpickle.dump((args[2], args[3]), f)
            args = (args[0], args[1], str(kept))
            out = f"{PENDING_MODEL}{seq:08d}"
            kwargs = {"_pending": out}
        entry = {"seq": seq, "op": op, "args": _encode(list(args)), "kwargs": _encode(kwargs)}
        with open(self.journal, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
        self.journaled += 1
        return out


class _PendingInfo:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id


class _PendingRun:
    """What ``create_run`` returns while the server is away: only the id is read."""

    def __init__(self, run_id: str) -> None:
        self.info = _PendingInfo(run_id)


def _apply(client: Any, op: str, args: Any, kwargs: dict[str, Any]) -> Any:
    if op == "log_model":
        return models.log_model(client, *args, **kwargs)
    if op == "register_model":
        return models.register(client, *args, **kwargs)
    return getattr(client, op)(*args, **kwargs)


def replay(client: Any, folder: Path, ids: dict[str, str] | None = None) -> int:
    """Write what the journal in `folder` holds and was not written yet, oldest first;
    returns how many writes it made. `ids` (stand-in -> real id) is kept up to date.

    Each write is recorded in ``done.jsonl`` as it succeeds, so a replay cut short (the
    server gone again) goes on where it stopped.
    """
    ids = {} if ids is None else ids
    journal = folder / JOURNAL_FILE
    if not journal.exists():
        return 0
    done_file = folder / DONE_FILE
    done: set[int] = set()
    if done_file.exists():
        for line in done_file.read_text().splitlines():
            record = json.loads(line)
            done.add(record["seq"])
            ids.update(record.get("ids", {}))
    written = 0
    for entry in _entries(journal):
        if entry["seq"] in done:
            continue
        args = _decode(entry["args"], ids)
        kwargs = _decode(entry["kwargs"], ids)
        pending = kwargs.pop("_pending", None)
        if entry["op"] == "log_model":
            args = [*args[:2], *_unpickle(Path(args[2]))]
        out = _apply(client, entry["op"], args, kwargs)
        new: dict[str, str] = {}
        if pending is not None:
            new[pending] = out.info.run_id if entry["op"] == "create_run" else str(out)
            ids.update(new)
        with open(done_file, "a") as f:
            f.write(json.dumps({"seq": entry["seq"], "ids": new}) + "\n")
        written += 1
    return written


def replay_journal(folder: Path, uri: str | None = None) -> tuple[int, str]:
    """``automl-ctl replay``: write the journal in `folder` to the store it was meant for
    (or `uri`); returns (writes made, the store's URI). A journal fully written already
    makes none."""
    from ..errors import UserError

    if not (folder / JOURNAL_FILE).exists():
        raise UserError(f"{folder}: no tracking journal there (expected {JOURNAL_FILE} in it)")
    from .connection import client_for, driver_settings

    driver_settings()
    target = uri or (folder / URI_FILE).read_text().strip()
    try:
        written = replay(client_for(target), folder)
    except Exception as ex:
        if connection_lost(ex):
            raise ConnectionError(
                f"the tracking server at {target} does not answer; nothing more was written, "
                f"run the replay again once it does ({pending_writes(folder)} write(s) left)"
            ) from ex
        raise
    return written, target


def pending_writes(folder: Path) -> int:
    """How many journaled writes in `folder` are not in MLflow yet."""
    journal = folder / JOURNAL_FILE
    if not journal.exists():
        return 0
    done_file = folder / DONE_FILE
    done = (
        {json.loads(line)["seq"] for line in done_file.read_text().splitlines()}
        if done_file.exists()
        else set()
    )
    return sum(1 for e in _entries(journal) if e["seq"] not in done)


def _entries(journal: Path) -> Iterator[dict[str, Any]]:
    for line in journal.read_text().splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            # a line cut short by a crash while it was written: nothing after it exists
            return


# --- the journal's encoding of MLflow's entities -------------------------------------------
_ENTITIES = ("Metric", "Param", "RunTag")


def _encode(value: Any) -> Any:
    from mlflow.entities import Metric, Param, RunTag

    if isinstance(value, Metric):
        return {"__Metric__": [value.key, value.value, value.timestamp, value.step]}
    if isinstance(value, Param):
        return {"__Param__": [value.key, value.value]}
    if isinstance(value, RunTag):
        return {"__RunTag__": [value.key, value.value]}
    if type(value).__module__.startswith("mlflow.entities"):
        # other entities (a dataset input): pickled, as this process wrote them
        import base64
        import pickle

        return {"__pickle__": base64.b64encode(pickle.dumps(value)).decode()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any, ids: dict[str, str]) -> Any:
    from mlflow import entities

    if isinstance(value, str):
        for pending, real in ids.items():
            if pending in value:
                value = value.replace(pending, real)
        return value
    if isinstance(value, list):
        return [_decode(v, ids) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, fields),) = value.items()
            name = key.strip("_")
            if key == f"__{name}__" and name in _ENTITIES:
                return getattr(entities, name)(*_decode(fields, ids))
            if key == "__pickle__":
                import base64
                import pickle

                return pickle.loads(base64.b64decode(fields))
        return {k: _decode(v, ids) for k, v in value.items()}
    return value


def _unpickle(path: Path) -> tuple[Any, Any]:
    import cloudpickle

    with open(path, "rb") as f:
        pipeline, example = cloudpickle.load(f)
    return pipeline, example
