"""Where the MLflow store is: its URI (and artifact root) from the tracking group, a check
that a tracking server answers, a client of it, and the lock a fresh embedded store is
opened under."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config.schema import TrackingConfig


def store_uri(tracking: TrackingConfig) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments) for the tracking group."""
    if tracking.kind == "server":
        return str(tracking.uri), None
    root = Path(tracking.store_dir).expanduser().resolve()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


# how long the first connection to a tracking server may take before the run gives up
CONNECT_SECONDS = 10.0


def check_reachable(uri: str) -> None:
    """Raise ConnectionError at once if nothing listens at an http(s) tracking URI's host
    and port. MLflow itself retries a refused connection with backoff for several seconds
    (8 s here) before it reports it; a server that is down at start is a setting to fix,
    not a hiccup."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_SECONDS):
            pass
    except OSError as ex:
        why = ex.strerror or str(ex) or type(ex).__name__
        raise ConnectionError(f"no server answers at {parts.hostname}:{port} ({why})") from ex


def driver_settings() -> None:
    """How a process that writes runs (the driver, `automl-ctl replay`) talks to MLflow,
    unless the user's environment says otherwise: a server that does not answer is known
    in a few seconds, not after MLflow's minutes of retries (its writes then wait in the
    journal, journal.py); and MLflow's chatter stays off the console: its two "View run"
    lines per run, urllib3's retry warnings, the store's migrations, and the sklearn
    flavour's pickle caution (the model is ours, pickled by our driver)."""
    import logging

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for noisy in ("mlflow.store.db.utils", "alembic", "mlflow.models.model"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for noisy in ("urllib3.connectionpool", "mlflow.sklearn"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    _sqlite_commits_without_fsync()


def _sqlite_commits_without_fsync() -> None:
    """SQLite stores (the default, outputs/mlflow/mlflow.db) in write-ahead-log mode with
    synchronous=NORMAL: a commit appends to the log and no longer waits for the disk's
    fsync (2.3 ms each, 6 writes per iteration: a quarter of the driver's time per
    iteration). A committed write survives this process being killed; only a power cut
    may lose the last ones. Readers (mlflow ui, automl-ctl) never block the writer."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def _on_connect(connection: Any, _record: Any) -> None:
    import sqlite3

    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def client_for(uri: str | None) -> Any:
    """An MLflow client of the store at `uri` (None: MLflow's default)."""
    from mlflow import MlflowClient

    return MlflowClient(uri)


def local_store(uri: str) -> Path | None:
    """The file (sqlite:///) or folder (file:// or a plain path) an embedded store's URI
    names; None for a tracking server."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme == "":
        return Path(uri)
    return None


class NoStore(LookupError):
    """No MLflow store where a reading command looks: no file there, or no server."""


def existing_client(uri: str) -> Any:
    """A client of a store that exists already: what reads a run never creates a store
    (MLflow would make an empty one, printing its migrations), nor waits through MLflow's
    minutes of retries for a server that is not there. NoStore says which."""
    path = local_store(uri)
    if path is not None and not path.exists():
        raise NoStore(f"no MLflow store at {uri}")
    try:
        check_reachable(uri)
    except ConnectionError as ex:
        raise NoStore(f"no MLflow store at {uri}: {ex}") from ex
    return client_for(uri)


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the default embedded store (tracking=local's store_dir)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or store_uri(TrackingConfig())[0]


@contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive advisory lock on `path` (no-op for None or where fcntl is missing)."""
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; MLflow's own retries are all there is
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
