"""The study's storage: URLs (masked for display), the trial budget enforced under Optuna's study-row lock,
and opening the study with heartbeat and retry."""

from __future__ import annotations

import contextlib
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError

from geodistill.config import Config
from geodistill.errors import GeodistillError

STORAGE_FILE = "optuna.db"
HEARTBEAT_S = 30  # a worker touches its running trial this often
GRACE_FACTOR = 4  # a trial silent for GRACE_FACTOR heartbeats is failed and re-queued (once)
RETRY_KEY = "failed_trial"  # the system attribute RetryHeartbeatStaleTrialCallback sets on a re-queued trial


class BudgetSpent(optuna.exceptions.OptunaError):
    """The study already holds its ``n_trials``: no new trial may start."""


def storage_url(cfg: Config, storage: str | None) -> str:
    """The study's RDB URL: ``storage`` as given, else a SQLite file in the study folder."""
    return storage or f"sqlite:///{Path(cfg.run_dir).resolve() / STORAGE_FILE}"


# Query parameters that carry a password (libpq's password and sslpassword, MySQL drivers' passwd).
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?(?:password|passwd|pwd)=)[^&]*")


def _credentials(url: str) -> tuple[str, str, str | None, str] | None:
    """``(scheme, user, password or None, rest)`` of ``scheme://user[:password]@rest``, split at the URL's
    LAST ``@``; None without credentials (no ``@``, or no authority: ``sqlite:///path@x``).

    SQLAlchemy ends the password at the first ``@``, urllib ends the authority at the first ``/``: with
    an unescaped ``@`` or ``/`` in the password either parser shows a piece of it as host, port or
    database. Splitting at the last ``@`` puts the whole password on the hidden side (and, when the
    database or query itself holds an ``@``, some of those too: more hidden, never less)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not sep or not at or rest.startswith("/"):
        return None
    user, colon, password = userinfo.partition(":")
    return scheme, user, password if colon else None, tail


def _hide_query(shown: str) -> str:
    return _QUERY_SECRET.sub(r"\1***", shown)


def mask_url(url: str) -> str:
    """The URL as it may be shown or written: ``postgresql://user:***@host/db``.

    Parsed with SQLAlchemy's ``make_url``; no piece of a password survives, even one with an unescaped
    ``@``, ``:`` or ``/`` that SQLAlchemy would split wrongly (see ``_credentials``), nor a password
    given as a query parameter. A URL that does not parse is never echoed: it may hold a password.
    """
    split = _credentials(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if split is not None and split[2] is not None:
        scheme, user, password, tail = split
        if parsed is None or (parsed.username, parsed.password) != (unquote(user), unquote(password)):
            # SQLAlchemy reads the credentials otherwise than the last "@" does: show neither reading's.
            return _hide_query(f"{scheme}://{user}:***@{tail}")
    if parsed is None:
        return "<unparsable storage URL>"
    return _hide_query(parsed.render_as_string(hide_password=True))


def _secrets(url: str) -> list[str]:
    """Every spelling of the URL's password a message may quote (raw, decoded, as each parser reads it),
    longest first."""
    found = set()
    split = _credentials(url)
    if split is not None and split[2]:
        found |= {split[2], unquote(split[2])}
    with contextlib.suppress(ArgumentError, ValueError):
        found.add(make_url(url).password or "")
    found |= {unquote(m.group(0).partition("=")[2]) for m in _QUERY_SECRET.finditer(url)}
    return sorted((s for s in found if s), key=len, reverse=True)


AT_HINT = "an '@' in the password must be written %40 (SQLAlchemy ends the password at its first '@')"


def check_url(url: str) -> None:
    """Raise a one-line GeodistillError saying what is wrong with an unparsable storage URL, never its
    password: the URL is shown with the password masked, and a port that is not a number is named.

    A password with an unescaped ``@`` is refused too: SQLAlchemy would take its tail for the host and
    the driver would look that name up (a DNS query carrying a piece of the password)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    split = _credentials(url)
    if parsed is not None:
        if "@" in (parsed.host or ""):
            raise GeodistillError(f"storage {mask_url(url)}: {AT_HINT}")
        return
    if split is not None:
        scheme, user, password, tail = split
        shown = _hide_query(f"{scheme}://{user}{':***' if password is not None else ''}@{tail}")
    else:
        parts = urlsplit(url)
        tail = f"{parts.netloc}{parts.path}"
        shown = f"{parts.scheme}://{tail}" if parts.scheme else ""
    where = re.split(r"[/?]", tail, maxsplit=1)[0]  # host[:port], no credentials
    port = where.rpartition("]")[2].partition(":")[2]  # after an IPv6 literal's brackets
    if port and not port.isdigit():
        raise GeodistillError(f"storage {shown}: port {port!r} is not a number")
    hint = f" ({AT_HINT})" if split is not None and "@" in (split[2] or "") else ""
    raise GeodistillError(
        f"storage {shown or '<not shown>'}: not a database URL{hint}; "
        "expected dialect[+driver]://user@host[:port]/db"
    )


def is_sqlite(url: str) -> bool:
    """True when ``url`` is a SQLite database (single-worker: SQLite has no row locks)."""
    try:
        return make_url(url).get_backend_name() == "sqlite"
    except (ArgumentError, ValueError):
        return False


def is_retry(trial: FrozenTrial) -> bool:
    """True when ``trial`` is the re-queued copy of a trial whose worker died (Optuna's retry callback)."""
    with warnings.catch_warnings():  # retried_trial_number is experimental; we rely on it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) is not None


def budget_used(trials: list[FrozenTrial]) -> int:
    """Trials that count towards ``n_trials``: all of them, except re-queued copies of a dead worker's trial
    (the retry replaces the original, which stays recorded as failed)."""
    return sum(1 for t in trials if not is_retry(t))


def _budget_used(session, study_id: int) -> int:
    """``budget_used`` counted in ``session``, the transaction that holds the study-row lock. (Storage
    getters open their own scoped session, which is this same thread-local one: leaving it would commit
    and release the lock, and two workers could then number a new trial alike.) Without FrozenTrials to
    hand to ``is_retry`` it counts the system attribute that ``retried_trial_number`` reads."""

    trials = session.query(models.TrialModel).filter(models.TrialModel.study_id == study_id)
    retries = (
        session.query(models.TrialSystemAttributeModel)
        .join(models.TrialModel)
        .filter(models.TrialModel.study_id == study_id, models.TrialSystemAttributeModel.key == RETRY_KEY)
    )
    return trials.count() - retries.count()


class BudgetStorage(RDBStorage):
    """RDBStorage that refuses to create a new trial once the study holds ``max_trials``.

    Optuna numbers a new trial while holding a row lock on the study (``SELECT ... FOR UPDATE``); counting
    under that same lock makes the total exact for any number of workers on PostgreSQL or MySQL. SQLite
    has no row locks (SQLAlchemy leaves ``FOR UPDATE`` out), so there the study is single-worker: ``tune``
    refuses workers > 1 on it. (MaxTrialsCallback only looks after a trial ends, so W workers overshoot by
    up to W - 1, and a rerun of a finished study still adds one trial per worker: optuna/optuna#3518.)
    """

    def __init__(self, url: str, max_trials: int, **kwargs: Any) -> None:
        if not hasattr(RDBStorage, "_get_prepared_new_trial"):
            raise GeodistillError(
                f"optuna {optuna.__version__} lacks the hook the trial budget uses; install optuna>=4.9,<6"
            )
        super().__init__(url, **kwargs)
        self.max_trials = max_trials

    def _get_prepared_new_trial(self, study_id, template_trial, session):  # called under the study-row lock
        if template_trial is None:  # a fresh ask(); re-queued and added trials carry a template
            used = _budget_used(session, study_id)
            if used >= self.max_trials:
                raise BudgetSpent(f"the study holds {used} of {self.max_trials} trials")
        return super()._get_prepared_new_trial(study_id, template_trial, session)


def _scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) with the URL's password replaced by ``***``; "(details hidden)"
    when a piece of a password that holds ``@``, ``:`` or ``/`` would still be in it (a driver that read
    the URL's credentials wrongly may quote that piece as a host name)."""
    secrets = _secrets(url)
    for secret in secrets:
        text = text.replace(secret, "***")
    pieces = {piece for secret in secrets for piece in re.split(r"[@:/]", secret) if piece}
    return "(details hidden)" if any(piece in text for piece in pieces) else text


def _open_storage(url: str, n_trials: int, heartbeat_s: int, tries: int = 5) -> BudgetStorage:
    for attempt in range(tries):
        try:
            return BudgetStorage(
                url,
                n_trials,
                heartbeat_interval=heartbeat_s,
                grace_period=GRACE_FACTOR * heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except (IntegrityError, ProgrammingError):
            # Workers starting together on an empty database race to create Optuna's tables (PostgreSQL:
            # duplicate key in pg_type); the loser finds them made when it tries again.
            if attempt == tries - 1:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def open_study(
    cfg: Config, url: str, study_name: str, n_trials: int, heartbeat_s: int = HEARTBEAT_S
) -> optuna.Study:
    """Create or load (``load_if_exists``) the study on ``url`` with the budget, heartbeat and retry set."""
    check_url(url)
    label = mask_url(url)
    try:
        with warnings.catch_warnings():  # heartbeat and retry are experimental; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _open_storage(url, n_trials, heartbeat_s)
            pruner = optuna.pruners.MedianPruner(
                n_startup_trials=cfg.tune.pruner_startup_trials, n_warmup_steps=cfg.tune.pruner_warmup_steps
            )
            return optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction="minimize",
                pruner=pruner,
                load_if_exists=True,
            )
    except ImportError as exc:
        raise GeodistillError(
            f"storage {label}: its database driver is missing ({exc}); for postgresql:// URLs "
            "pip install 'psycopg[binary]' (or write postgresql+psycopg2://... with psycopg2 installed)"
        ) from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, ArgumentError) as exc:
        first = _scrub(str(getattr(exc, "orig", None) or exc), url).strip().splitlines()
        raise GeodistillError(
            f"storage {label}: cannot open it ({first[0] if first else type(exc).__name__})"
        ) from None
    except ValueError as exc:  # e.g. the study exists with another direction
        raise GeodistillError(f"storage {label}, study {study_name!r}: {_scrub(str(exc), url)}") from None
