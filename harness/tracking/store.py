"""One MLflow tracking store: opened with short network timeouts, written, and read back.

Only the tracking package imports MLflow, and only when ``tracking=mlflow`` (importing it costs
seconds). Every failure to reach or write the store becomes a TrackingError with one short
line, so the caller decides whether it is fatal (``tracking.required``) or a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.config import CONF_DIR, TrackingConfig
from harness.errors import RunIdError, TrackingError
from harness.redact import Redactor

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
# MLflow 3 UIs that read it open an experiment of this kind on its runs, not on the GenAI pages.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# MLflow 3.17 decides by its "GenAI | Model training" switch instead (default GenAI, whatever the
# tag): this URL parameter sets it, so links the harness prints open on the runs.
UI_WORKFLOW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
ARTIFACTS_DIR = "mlartifacts"  # beside a local SQLite store, like `mlflow server` does
# Files whose secrets sit under keys, not only in text: rewritten key by key before upload.
STRUCTURED = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
STRUCTURED_MAX_BYTES = 1 << 20  # accuracy logs can be large and hold token ids only: text scrub suffices
LOCK_TIMEOUT_S = 120  # creating and migrating a new database takes seconds; a stuck holder, not this
BUSY_RETRY_S = 30  # SQLite "database is locked": another run is writing the file


def default_uri() -> str:
    """The store ``tracking=mlflow`` uses when ``tracking.uri`` is not given (conf/tracking/mlflow.yaml)."""
    from omegaconf import OmegaConf

    return str(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "tracking" / "mlflow.yaml"), resolve=True)["uri"])


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths against the current directory)."""
    if not uri.startswith(SQLITE_PREFIX) or uri.endswith(":memory:"):
        return None
    return Path(uri[len(SQLITE_PREFIX):]).absolute()


def resolve_uri(uri: str) -> str:
    """Absolute form of a local SQLite URI, so logs and `mlflow ui` name one unambiguous file."""
    path = sqlite_path(uri)
    return f"{SQLITE_PREFIX}{path}" if path is not None else uri


def ui_link(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """Where the MLflow UI shows an experiment (or one run) on its runs pages: the tracking server
    itself, or for a local store ``mlflow ui``'s default address."""
    base = shown(uri).rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "") + f"?{UI_WORKFLOW}"


def configure_http(timeout_s: int, retries: int) -> None:
    """Short MLflow HTTP timeouts: a dead tracking server costs seconds, never a hang.

    MLflow reads these on every request. Backoff without jitter keeps the bound predictable.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"
    # No tqdm bars for artifact uploads and downloads (harness-audit <run id>, tracking=mlflow).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _quiet_mlflow() -> None:
    # MLflow and alembic log schema migrations at INFO through the root logger Hydra configured,
    # and urllib3 a "Retrying ..." warning per retry: the harness reports a dead store in one line.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A busy SQLite database is logged there as an error with a traceback, then retried (retry_busy).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")


def shown(uri: str | None) -> str:
    """A store URI as printed or logged: a password in it (http://user:pw@host) masked."""
    return Redactor().text(str(uri))


def short(exc: BaseException) -> str:
    """The reason in a few words: MLflow's messages wrap whole urllib3 error chains."""
    text = shown(" ".join(str(exc).split()))
    errno = _ERRNO.search(text)
    if errno:
        return errno.group(1).strip().rstrip(":")
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '?')} s"
    return f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def client(uri: str, config: TrackingConfig | None = None) -> MlflowClient:
    """An MlflowClient for ``uri`` with the harness's network bounds (from ``config`` or defaults)."""
    config = config or TrackingConfig(backend="mlflow", uri=uri)
    configure_http(config.timeout_s, config.retries)
    from mlflow import MlflowClient

    _quiet_mlflow()  # after the import: importing mlflow sets its own logger's level
    return MlflowClient(tracking_uri=resolve_uri(uri))


def _experiment_id(mlflow_client: MlflowClient, config: TrackingConfig, db: Path | None) -> str:
    """The experiment's id, creating it (with its artifact root) when it does not exist."""
    experiment = mlflow_client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        if EXPERIMENT_KIND[0] not in experiment.tags:  # an experiment from an older harness
            mlflow_client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        return experiment.experiment_id
    location = config.artifact_location
    if location is None and db is not None:
        location = str(db.parent / ARTIFACTS_DIR)
    if location is not None and "://" not in location:
        location = Path(location).absolute().as_uri()
    try:
        return mlflow_client.create_experiment(config.experiment, artifact_location=location,
                                               tags=dict([EXPERIMENT_KIND]))
    except Exception:  # another process (of another store path, e.g. a server) created it first
        experiment = mlflow_client.get_experiment_by_name(config.experiment)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextlib.contextmanager
def creation_lock(db: Path | None) -> Iterator[None]:
    """Hold ``<db>.lock`` (a file lock, across processes) while a SQLite store is opened; no-op for servers."""
    if db is None:
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(f"{db}.lock")
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise TrackingError(f"MLflow store {db}: another process held {lock.lock_file} for over "
                            f"{LOCK_TIMEOUT_S} s") from None
    try:
        yield
    finally:
        lock.release()


def _busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


def retry_busy(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried with backoff while SQLite reports the database busy (another
    run writing the same file), for up to BUSY_RETRY_S seconds."""
    deadline = time.monotonic() + BUSY_RETRY_S
    delay = 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _busy(exc) or time.monotonic() + delay > deadline:
                raise
            log.debug("MLflow store busy, retrying in %.2f s: %s", delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@dataclass
class Store:
    """An opened store and the experiment runs go to."""

    uri: str
    client: MlflowClient
    experiment_id: str

    @classmethod
    def open(cls, config: TrackingConfig) -> Store:
        """Connect (creating a local database and the experiment when needed) or raise TrackingError.

        A local SQLite store is opened under a file lock beside the database: MLflow creates and
        migrates its schema on first use, and two processes doing that at once leave a
        half-migrated database (``table ... already exists``) that no later run can write to.
        """
        uri = resolve_uri(config.uri or default_uri())
        db = sqlite_path(uri)
        try:
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            with creation_lock(db):
                mlflow_client = client(uri, config)
                experiment_id = retry_busy(_experiment_id, mlflow_client, config, db)
        except TrackingError:
            raise
        except Exception as exc:  # any failure to reach the store is reported the same way
            raise TrackingError(f"MLflow store {shown(uri)} unreachable ({short(exc)})") from exc
        return cls(uri, mlflow_client, experiment_id)

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One MLflow call, retried while SQLite is busy; a failure becomes a TrackingError naming the
        store and the step."""
        try:
            return retry_busy(fn, *args, **kwargs)
        except Exception as exc:
            raise TrackingError(f"MLflow store {shown(self.uri)}: {what} failed ({short(exc)})") from exc

    def start_run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
        tags = dict(tags)
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id  # what the MLflow UI nests runs by
        run = self.call("creating a run", self.client.create_run, self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def log(self, run_id: str, params: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None,
            tags: Mapping[str, str] | None = None) -> None:
        """Params, metrics and tags in one batch (MLflow splits it into requests of its limits)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.call("logging params/metrics/tags", self.client.log_batch, run_id,
                  metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                  params=[Param(k, str(v)) for k, v in (params or {}).items()],
                  tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.call(f"logging {artifact_file}", self.client.log_text, run_id, text, artifact_file)

    def log_dir(self, run_id: str, directory: Path, redactor: Redactor, artifact_path: str | None = None) -> None:
        """Upload ``directory`` as the run's artifacts, laid out as on disk, secrets masked."""
        with tempfile.TemporaryDirectory(prefix="harness-artifacts-") as staging:
            stage_redacted(Path(directory), Path(staging), redactor)
            self.call("uploading artifacts", self.client.log_artifacts, run_id, staging, artifact_path)

    def log_file(self, run_id: str, path: Path, redactor: Redactor, artifact_path: str | None = None) -> None:
        """Upload one file, secrets masked, as an artifact (at the top level unless ``artifact_path``)."""
        with tempfile.TemporaryDirectory(prefix="harness-artifacts-") as staging:
            dest = Path(staging) / path.name
            raw = path.read_bytes()
            cleaned = _redact_structured(path, raw, redactor)
            dest.write_bytes(redactor.bytes(cleaned if cleaned is not None else raw))
            self.call(f"logging {path.name}", self.client.log_artifact, run_id, str(dest), artifact_path)

    def end(self, run_id: str, status: str) -> None:
        self.call("closing the run", self.client.set_terminated, run_id, status)

    def children(self, parent_id: str) -> list[Any]:
        """The runs nested under ``parent_id`` (``mlflow.entities.Run``), oldest first."""
        runs, token = [], None
        while True:
            page = self.call("reading the child runs", self.client.search_runs, [self.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000,
                             order_by=["attributes.start_time ASC"], page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs


def stage_redacted(source: Path, target: Path, redactor: Redactor) -> list[Path]:
    """Copy every file of ``source`` into ``target`` with secrets masked; returns the copies.

    Files without secrets are copied byte for byte (``accuracy.txt`` holds the sha256 of the
    accuracy log, which must still match).
    """
    copies = []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        raw = path.read_bytes()
        cleaned = _redact_structured(path, raw, redactor)
        cleaned = redactor.bytes(cleaned if cleaned is not None else raw)
        if cleaned == raw:
            shutil.copyfile(path, dest)
        else:
            dest.write_bytes(cleaned)
        copies.append(dest)
    return copies


def _redact_structured(path: Path, raw: bytes, redactor: Redactor) -> bytes | None:
    """A JSON/YAML file rewritten with secret keys masked, or None when nothing changes."""
    kind = STRUCTURED.get(path.suffix)
    if kind is None or len(raw) > STRUCTURED_MAX_BYTES:
        return None
    try:
        data = json.loads(raw) if kind == "json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError):
        return None
    cleaned = redactor.data(data)
    if cleaned == data:
        return None
    if kind == "json":
        return (json.dumps(cleaned, indent=2) + "\n").encode()
    return yaml.safe_dump(cleaned, sort_keys=False).encode()


RUN_ID_LENGTH = 32  # MLflow run ids: 32 hex digits; tables show the first 8
_HEX = re.compile(r"[0-9a-f]+")


def looks_like_run_id(text: str) -> bool:
    """Hex digits, at most a whole run id's worth: a run id or the start of one."""
    return bool(_HEX.fullmatch(text.strip().lower())) and len(text.strip()) <= RUN_ID_LENGTH


def resolve_run_id(mlflow_client: MlflowClient, ref: str) -> str:
    """The full id of the run whose id is ``ref`` or starts with it (any unique prefix, e.g. the 8
    characters tables show). Raises RunIdError naming the candidates when none or several match,
    TrackingError when the store cannot be read."""
    from mlflow.entities import ViewType

    text = ref.strip().lower()
    if not looks_like_run_id(text):
        raise RunIdError(f"{ref!r} is not an MLflow run id (up to {RUN_ID_LENGTH} hex digits, or the start of one)")
    try:
        experiments, token = [], None
        while True:
            page = mlflow_client.search_experiments(view_type=ViewType.ALL, page_token=token)
            experiments += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
        found = mlflow_client.search_runs(experiments, filter_string=f"attributes.run_id LIKE '{text}%'",
                                          run_view_type=ViewType.ACTIVE_ONLY, max_results=6) if experiments else []
    except Exception as exc:
        raise TrackingError(f"cannot look up run {ref} in {shown(mlflow_client.tracking_uri)} ({short(exc)})") from exc
    if not found:
        raise RunIdError(f"no run id starts with {ref!r} in {shown(mlflow_client.tracking_uri)}")
    if len(found) > 1:
        names = ", ".join(f"{r.info.run_id} ({r.info.run_name})" for r in found[:5])
        raise RunIdError(f"run id {ref!r} is ambiguous: {names}{', ...' if len(found) > 5 else ''}; "
                         "give more characters")
    return found[0].info.run_id


def download_run_dir(run_id: str, tracking_uri: str | None = None, dest: Path | None = None) -> Path:
    """Fetch a run's artifacts into a local directory laid out like its run directory.

    ``run_id`` may be any unique prefix of the id. ``tracking_uri`` defaults to the harness's store
    (``MLFLOW_TRACKING_URI`` or ``sqlite:///runs/mlflow.db``); ``dest`` to a new temporary
    directory. Returns the directory holding ``results.json``, ``config.json``, ``performance/``,
    ``accuracy/``, ... Raises RunIdError for an unknown or ambiguous id, TrackingError when the
    store or run cannot be read, removing the temporary directory.
    """
    uri = resolve_uri(tracking_uri or default_uri())
    db = sqlite_path(uri)
    if db is not None and not db.is_file():  # reading must not create an empty store
        raise TrackingError(f"cannot download the artifacts of run {run_id}: no MLflow store at {db}")
    mlflow_client = client(uri)
    run_id = resolve_run_id(mlflow_client, run_id)
    temporary = dest is None
    dest = Path(tempfile.mkdtemp(prefix=f"harness-run-{run_id[:8]}-")) if dest is None else Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        local = mlflow_client.download_artifacts(run_id, "", str(dest))
    except Exception as exc:
        if temporary:  # nothing was downloaded: leave nothing behind
            shutil.rmtree(dest, ignore_errors=True)
        raise TrackingError(f"cannot download the artifacts of run {run_id} from {shown(uri)} ({short(exc)})") from exc
    return Path(local)
