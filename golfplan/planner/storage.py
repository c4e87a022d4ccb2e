"""Where studies live: Optuna storages from a URL, the study attributes golfplan keeps, and URLs
with their credentials masked.

A study's own attributes (``study.user_attrs``), written by the planner and read by reports:

    golfplan.definition      the StudyDef (its storage URL masked)
    golfplan.base_config     the resolved config every trial starts from (profile + config keys)
    golfplan.baseline_key    the key of the configuration every other is judged against
    golfplan.chosen_key      the configuration a strategy chose (the final stack), when it is not
                             simply the best feasible one
    golfplan.check:KEY       a passed preflight of configuration KEY (checked once per study)
    golfplan.refused:KEY     a refused configuration, and ``golfplan.refused:set:A+B`` a refused
                             subset of plugins that is never proposed again

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
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - driver and connection errors, as one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudyError(scrub(f"cannot open storage {url}: {type(e).__name__}: {first}", url)) from None


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
