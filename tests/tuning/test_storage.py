"""The study's database: a storage URL that cannot be used is one line (exit 2, password
hidden), and a real PostgreSQL server (a throwaway cluster on a local socket) holds a study
that two workers share."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

from vlkge.cli import main
from vlkge.errors import VlkgeError
from vlkge.tuning.storage import default_url, open_storage, shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "--storage: 'not a url' is not a database URL"),
        ("nosuchdb://host/db", "unknown database 'nosuchdb'"),
        ("sqlite:////no/such/folder/study.db", "cannot open the database: unable to open"),
        ("postgresql+nosuchdriver://u@h/db", "unknown database 'postgresql+nosuchdriver'"),
    ],
)
def test_bad_urls_are_one_line(url, message):
    with pytest.raises(VlkgeError) as caught:
        open_storage(url)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_passwords_are_hidden(tmp_path):
    url = "postgresql://me:secret@127.0.0.1:1/db"
    assert shown(url) == "postgresql://me:***@127.0.0.1:1/db"
    with pytest.raises(VlkgeError) as caught:  # nothing listens on port 1
        open_storage(url)
    assert "secret" not in str(caught.value) and "cannot open the database" in str(caught.value)
    with pytest.raises(VlkgeError, match="password is not kept in tune.yaml"):
        open_storage(shown(url))


def test_default_is_a_sqlite_file_in_the_folder(tmp_path):
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'study.db'}"
    open_storage(default_url(tmp_path))
    assert (tmp_path / "study.db").is_file()


def test_bad_storage_on_the_command_line(base_config, space_file, tmp_path, capsys):
    space = space_file({"parameters": {"model.dim": [8, 16]}})
    code = main(
        ["tune", "--config", str(base_config), "--space", str(space), "--trials", "2"]
        + ["--out", str(tmp_path / "out"), "--storage", "mysql+nodriver://u:pw@h/db"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pw" not in err
    assert err.startswith("vlkge: error: --storage mysql+nodriver://u:***@h/db: unknown database")


# --- a real PostgreSQL server ------------------------------------------------------------
def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None
    )
    return Path(found).parent if found else None


@pytest.fixture
def postgresql_url():
    """A throwaway PostgreSQL cluster listening on a Unix socket only; its URL. As root, the
    server runs as the ``postgres`` user that Debian's package creates."""
    binaries = _postgres_bin()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing (.ci/run installs the postgresql package)")
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (vlkge[postgresql])")
    folder = Path(tempfile.mkdtemp(prefix="vlkge-pg-"))  # short: a socket path has a limit
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chmod(folder, 0o755)
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "vlkge", "--auth=trust", "--no-sync")
    options = f"-k {folder} -c listen_addresses='' -F"
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql://vlkge@/postgres?host={folder}"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(
    postgresql_url, base_config, space_file, tmp_path, capsys
):
    space = space_file(
        {
            "sampler": "random",
            "pruner": "none",
            "parameters": {"training.optimizer.lr": {"low": 0.05, "high": 0.5, "log": True}},
        }
    )
    out = tmp_path / "search"
    args = ["--config", str(base_config), "--space", str(space), "--trials", "4"]
    args += [
        "--out",
        str(out),
        "--storage",
        postgresql_url,
        "--workers",
        "2",
        "--set",
        "training.epochs=2",
    ]
    assert main(["tune", *args]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="search", storage=postgresql_url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len({t.user_attrs["run"] for t in trials}) == 4
    assert len({t.system_attrs["vlkge:worker"] for t in trials}) == 2  # both workers trained
    assert "postgresql://vlkge@/postgres" in (out / "tune.yaml").read_text()
    assert not list(out.glob("study.db*"))  # nothing in SQLite
    capsys.readouterr()
    assert main(["tune", str(out), "--show"]) == 0
    assert capsys.readouterr().out.count("complete") == 4
