"""Where studies live: Optuna storages from a URL, the study attributes golfplan keeps, and URLs
with their credentials masked.

A study's own attributes (``study.user_attrs``), written by the planner and read by reports:

    golfplan.definition      the StudyDef (its storage URL masked)
    golfplan.base_config     the resolved config every trial starts from (profile + config keys)
    golfplan.baseline_key    the key of the configuration every other is judged against
    golfplan.chosen_key      the configuration a strategy chose (the final stack), when it is not
                             simply the best feasible one
    golfplan.ladder          a ladder rung's study: its rung, the study below, their agreement
    golfplan.check:KEY       a passed preflight of configuration KEY (checked once per study)
    golfplan.refused:KEY     a refused configuration, and ``golfplan.refused:set:A+B`` a refused
                             subset of plugins that is never proposed again

SQLite storages serialize their transactions (:func:`serialize_sqlite`), so several threads of one
planner (``--jobs``) and several workers on one file never pop the same queued trial. A
``postgresql://`` URL is opened with the driver installed (psycopg2, from ``golfplan[postgres]``),
and refused with the extra to install when there is none.

A storage URL may carry a password (``postgresql://user:SECRET@host/db``): every message, header,
stored definition and report shows it through :func:`mask_url` (``user:***@host``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from golfplan.planner.definition import DEFAULT_STORAGE, StudyDef, StudyError

DEF_ATTR = "golfplan.definition"
BASELINE_ATTR = "golfplan.baseline_key"
BASE_ATTR = "golfplan.base_config"
CHOSEN_ATTR = "golfplan.chosen_key"
LADDER_ATTR = "golfplan.ladder"
REFUSED_PREFIX = "golfplan.refused:"
CHECKED_PREFIX = "golfplan.check:"

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@?#\s]*):(?P<secret>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|secret|token)=)(?P<secret>[^&#\s]*)", re.I)


def mask_url(text: str | None) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``user:***@host``), and
    ``password=`` style query values masked too. Safe on text that holds no URL."""
    if not text:
        return text or ""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", text)


def url_secrets(url: str | None) -> list[str]:
    """The secrets a URL carries (its password, password-like query values)."""
    if not url:
        return []
    found = [m["secret"] for m in _USERINFO.finditer(url)] + [m["secret"] for m in _QUERY_SECRET.finditer(url)]
    return [s for s in found if s]


def scrub(text: str, url: str | None) -> str:
    """``text`` with ``url``'s secrets removed wherever they appear (a driver may echo them)."""
    out = mask_url(text)
    for secret in url_secrets(url):
        out = out.replace(secret, "***")
    return out


def open_storage(url: str | None) -> Any:
    """An Optuna storage from a URL: sqlite:///file.db (default), postgresql://..., or a journal file
    (``journal:PATH`` or a path ending in .log / .journal / .jsonl)."""
    import optuna

    url = url or DEFAULT_STORAGE
    journal = None
    if url.startswith("journal:"):
        journal = url[len("journal:"):]
        journal = journal[2:] if journal.startswith("//") else journal
    elif "://" not in url and url.endswith((".log", ".journal", ".jsonl")):
        journal = url
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        if not journal:
            raise StudyError("journal storage needs a file: journal:PATH")
        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(journal))
    if "://" not in url:
        raise StudyError(f"storage '{mask_url(url)}' is not a URL: use sqlite:///FILE.db, "
                         f"postgresql://USER@HOST/DB or journal:FILE")
    sqlite = url.startswith("sqlite")
    given, url = url, with_postgres_driver(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - driver and connection errors, as one line
        if url.startswith("postgres") and _missing_driver(e):
            raise StudyError(f"storage {mask_url(given)} needs a PostgreSQL driver (psycopg2), which is not "
                             f"installed: pip install 'golfplan[postgres]'") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudyError(scrub(f"cannot open storage {given}: {type(e).__name__}: {first}", url)) from None
    if sqlite:
        serialize_sqlite(storage.engine)
    return storage


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def with_postgres_driver(url: str) -> str:
    """``postgresql://...`` with the driver this environment has: SQLAlchemy 2.1 takes a bare
    ``postgresql://`` to mean psycopg (3), while ``golfplan[postgres]`` installs psycopg2; a URL that
    names its driver (``postgresql+psycopg2://``) is kept as it is."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "postgresql" and not _importable("psycopg") and _importable("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return url


def _missing_driver(e: BaseException) -> bool:
    """True when opening an RDB storage failed because its DB-API module is not installed (Optuna
    re-raises SQLAlchemy's ModuleNotFoundError as an ImportError of its own)."""
    while e is not None:
        if isinstance(e, ImportError):
            return True
        e = e.__cause__ or e.__context__
    return False


def serialize_sqlite(engine: Any) -> None:
    """Make every SQLAlchemy transaction on this SQLite engine ``BEGIN IMMEDIATE``.

    Python's sqlite3 driver runs a SELECT outside any transaction and opens one only at the first
    write, so two threads (``--jobs``) or two workers popping the same queued trial could both read
    it WAITING and both mark it RUNNING (Optuna's ``FOR UPDATE`` is a no-op on SQLite). Taking the
    write lock at the start of each transaction serializes them: the second waits (up to the
    connection's 60 s busy timeout) and then sees the trial taken. Transactions are short, so the
    cost is a little waiting, never a duplicate trial nor a "database is locked" error."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver opens no transaction of its own

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners (Optuna's schema setup) are dropped


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_definition(storage: Any, name: str) -> StudyDef:
    """The StudyDef a golfplan study stored when it was created."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        from golfplan.core.errors import closest

        raise StudyError(f"no study '{name}' in this storage{closest(name, study_names(storage))}") from None
    raw = study.user_attrs.get(DEF_ATTR)
    if raw is None:
        raise StudyError(f"study '{name}' was not made by golfplan (no definition stored)")
    return StudyDef.from_dict(raw, where=f"stored study '{name}'")
