"""The study's database: a SQLite file in the search folder by default, any SQLAlchemy URL
(PostgreSQL) to share one study between hosts; a URL that cannot be used is one line.

Passwords never reach a file or a process list: ``tune.yaml`` keeps the URL with its password
hidden, and workers receive the URL in their environment (:data:`URL_VARIABLE`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

from vlkge.errors import VlkgeError, echo
from vlkge.tuning import recovery

DATABASE = "study.db"
URL_VARIABLE = "VLKGE_TUNE_STORAGE"
HIDDEN = "***"


def default_url(folder: str | Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / DATABASE}"


def shown(url: str) -> str:
    """``url`` with its password hidden (as written to ``tune.yaml`` and in messages)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return echo(url, quote=False)


def _engine_options(url) -> dict:
    backend = url.get_backend_name()
    if backend == "sqlite":  # several worker processes write one file: wait for its lock
        return {"connect_args": {"timeout": 60}}
    options: dict = {"pool_pre_ping": True}
    if backend == "postgresql":
        options["connect_args"] = {"connect_timeout": 10}
    return options


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at ``url`` with heartbeats on (:mod:`vlkge.tuning.recovery`)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    optuna.logging.set_verbosity(logging.WARNING)
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except NoSuchModuleError:  # an ArgumentError too: first
        raise VlkgeError(
            f"--storage {shown(url)}: unknown database {echo(parsed.drivername)} (sqlite, "
            "postgresql, mysql, ...)"
        ) from None
    except ArgumentError:
        raise VlkgeError(
            f"--storage: {echo(url)} is not a database URL (sqlite:///FILE, "
            "postgresql://USER@HOST/DATABASE or another SQLAlchemy URL)"
        ) from None
    if parsed.password == HIDDEN:
        raise VlkgeError(
            f"--storage {shown(url)}: the password is not kept in tune.yaml; give the URL "
            "again with --storage (or keep the password in ~/.pgpass)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=_engine_options(parsed),
                heartbeat_interval=recovery.HEARTBEAT_S,
                grace_period=recovery.GRACE_S,
                heartbeat_stale_trial_callback=recovery.continue_slot,
            )
        except ImportError as exc:
            driver = getattr(exc.__cause__, "name", None) or str(exc.__cause__ or exc)
            postgresql = parsed.get_backend_name() == "postgresql"
            hint = ' (pip install "vlkge[postgresql]")' if postgresql else ""
            raise VlkgeError(
                f"--storage {shown(url)}: the database driver {driver} is not installed{hint}"
            ) from None
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError) as exc:
            reason = getattr(exc, "orig", None) or exc.__cause__ or exc
            text = " ".join(str(reason).split())
            raise VlkgeError(
                f"--storage {shown(url)}: cannot open the database: {echo(text, quote=False)}"
            ) from None
