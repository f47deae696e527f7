"""Wrong arguments and missing configuration: a clear line and a non-zero exit, no traceback.

Each case here used to end in a Python traceback (an ``OverflowError`` from ``bind()``, a
``ConfigError`` out of ``reconcile``, a ``JSONDecodeError`` or a pydantic ``ValidationError``
out of the simulator's options, a ``FileNotFoundError`` out of ``openapi``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from paytabs_guard.entrypoints.cli import main
from paytabs_simulator.__main__ import parse_args

SETTINGS_VARIABLES = ("PAYTABS_PROFILE_ID", "PAYTABS_SERVER_KEY", "DATABASE_URL")


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PayTabs credentials, a throw-away SQLite file, no .env file in the working dir."""
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    return tmp_path


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The message of an argparse usage error (exit 2) for ``paytabs-guard argv``."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--port", "99999"], "argument --port: port must be 0-65535, got 99999"),
        (["serve", "--simulator-port", "-1"], "argument --simulator-port: port must be 0-65535"),
        (["serve", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["demo", "--port", "70000"], "argument --port: port must be 0-65535, got 70000"),
        (["reconcile", "--limit", "-5"], "argument --limit: must be 1-1000000, got -5"),
        # Past a 64-bit integer it was an OverflowError traceback out of the SQLite driver.
        (
            ["reconcile", "--limit", "99999999999999999999"],
            "argument --limit: must be 1-1000000, got 99999999999999999999",
        ),
        (["reconcile", "--stuck-after", "-1"], "argument --stuck-after: must be 0-2592000"),
        (
            ["reconcile", "--stuck-after", "99999999999999"],
            "argument --stuck-after: must be 0-2592000",
        ),
        (["bench", "load", "--duration", "-1"], "argument --duration: must be a number above 0"),
        (["bench", "load", "--warmup", "nan"], "argument --warmup: must be a number from 0"),
        (["bench", "load", "--concurrency", "0"], "argument --concurrency: must be at least 1"),
        (["bench", "load", "--memory-seconds", "inf"], "--memory-seconds: must be a number"),
        # Accepted before: 0 workers ran the whole benchmark, "abc" ended in a traceback, and
        # an unknown database was only found out after the other phases.
        (["bench", "load", "--workers", "0"], "argument --workers: worker count must be 1-64"),
        (["bench", "load", "--workers", "1,x"], "--workers: invalid worker count: 'x'"),
        (["bench", "load", "--workers", "2,2"], "--workers: worker count repeats a value"),
        (["bench", "load", "--databases", "mysql"], "--databases: databases must be a comma-"),
        (["bench", "load", "--databases", "sqlite,"], "subset of sqlite,postgres, got 'sqlite,'"),
        (["bench", "chaos", "--rate", "-3"], "argument --rate: must be a number above 0, got -3"),
        (["bench", "chaos", "--rate", "fast"], "argument --rate: invalid number: 'fast'"),
    ],
)
def test_an_out_of_range_number_is_a_usage_error(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in usage_error(argv, capsys)


def test_reconcile_without_credentials_names_them_and_exits_2(
    bare_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reconcile"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "configuration error: PAYTABS_PROFILE_ID: required (your PayTabs profile id)",
        "configuration error: PAYTABS_SERVER_KEY: required (your PayTabs server key)",
    ]
    assert captured.out == ""


def test_openapi_to_a_path_that_cannot_be_written_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "openapi.json"
    assert main(["openapi", "--json", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == f"paytabs-guard openapi: cannot write {target}: No such file or directory\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--faults", "{bad"], "--faults is not JSON: Expecting property name"),
        (["--faults", "[1]"], "--faults must be a JSON object"),
        (["--faults", '{"error_rate": 5}'], "invalid faults: error_rate: Input should be less"),
        (["--error-rate", "7"], "invalid faults: error_rate: Input should be less than or equal"),
        (["--faults", '{"nope": 1}'], "invalid faults: nope: Extra inputs are not permitted"),
        (["--port", "-1"], "argument --port: port must be 0-65535, got -1"),
    ],
)
def test_simulator_options_that_are_wrong_are_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv, prog="paytabs-guard simulator")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"paytabs-guard simulator: error: {expected}" in err
    assert "Traceback" not in err


def test_a_bad_simulator_variable_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIMULATOR_SEED", "many")
    with pytest.raises(SystemExit) as stopped:
        parse_args([], prog="paytabs-guard simulator")
    assert stopped.value.code == 2
    assert "error: SIMULATOR_SEED must be an integer, got 'many'" in capsys.readouterr().err


def test_db_upgrade_on_a_database_it_cannot_reach_says_which_in_one_line(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 1 refuses at once; the password in the URL must not be printed.
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/x")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("paytabs-guard db upgrade: cannot use postgresql+asyncpg://postgres:***@")
    assert "s3cret" not in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["db", "upgrade"], ["reconcile"]])
@pytest.mark.parametrize("problem", ["no such database", "no such role"])
def test_a_database_that_answers_no_is_one_line_too(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    problem: str,
) -> None:
    # Reached, but it refuses: a wrong role or a database that does not exist printed a
    # hundred lines of traceback, where a refused connection got one line.
    server = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    postgres_url = server.replace("postgresql://", "postgresql+asyncpg://")
    base, _, _ = postgres_url.rpartition("/")
    url = (
        f"{base}/no_such_database_here"
        if problem == "no such database"
        else postgres_url.replace("://postgres@", "://nobody_here:s3cret@")
    )
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PAYTABS_PROFILE_ID", "1")
    monkeypatch.setenv("PAYTABS_SERVER_KEY", "server-key-for-a-test")
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"paytabs-guard {command[0]}"), err
    assert "cannot use postgresql+asyncpg://" in err
    assert "s3cret" not in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_serve_on_a_database_it_cannot_reach_says_so_before_it_says_serving(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It printed its "serving on" banner, then a worker died with a lifespan traceback (exit 3).
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/x")
    monkeypatch.setenv("PAYTABS_PROFILE_ID", "1")
    monkeypatch.setenv("PAYTABS_SERVER_KEY", "server-key-for-a-test")
    assert main(["serve", "--host", "127.0.0.1", "--port", "0"]) == 1
    out, err = capsys.readouterr()
    assert "serving" not in out
    assert err.startswith("paytabs-guard serve: cannot use postgresql+asyncpg://postgres:***@")
    assert "s3cret" not in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.postgres
def test_a_libpq_style_database_url_is_one_line_that_says_what_asyncpg_takes(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = server.replace("postgresql://", "postgresql+asyncpg://") + "?sslmode=require"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "takes no 'sslmode' parameter" in err
    assert "ssl=require" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql+asyncpg://postgres:s3cret@db.internal:54x2/payments", "driver can read"),
        ("postgresql+asyncpg://postgres:s3cret@[::1/payments", "driver can read"),
        ("postgresql+asyncpg://postgres:s3cret@127.0.0.1:99999/payments", "port must be 1-65535"),
        ("sqlite+aiosqlite://", "SQLite needs a database file"),
    ],
)
@pytest.mark.parametrize("command", [["config", "check"], ["serve", "--port", "0"]])
def test_a_database_url_the_driver_cannot_read_is_one_line_before_anything_starts(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    problem: str,
    command: list[str],
) -> None:
    # `config check` said "configuration OK", then `serve` (and `db upgrade`, `reconcile`)
    # died in the migration with a ValueError traceback out of SQLAlchemy's URL parser, or an
    # OverflowError out of connect() for a port past 65535.
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PAYTABS_PROFILE_ID", "1")
    monkeypatch.setenv("PAYTABS_SERVER_KEY", "server-key-for-a-test")
    code: int | str | None
    try:
        code = main(command)
    except SystemExit as stopped:  # `config check` exits from its settings loader
        code = stopped.code
    assert code == 2
    out, err = capsys.readouterr()
    assert "serving" not in out
    assert err.startswith("configuration error: DATABASE_URL: "), err
    assert problem in err
    assert "s3cret" not in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["config", "check"], ["serve", "--port", "0"]])
def test_a_dot_env_file_that_is_not_utf8_is_one_line_that_shows_none_of_it(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    # Saved in Latin-1 or UTF-16 by an editor, a .env file made every command end in a
    # UnicodeDecodeError traceback out of python-dotenv.
    monkeypatch.delenv("DATABASE_URL")
    (bare_environment / ".env").write_bytes(
        b"PAYTABS_PROFILE_ID=1\nPAYTABS_SERVER_KEY=S-TOPSECRET-\xe9t\xe9\n"
    )
    code: int | str | None
    try:
        code = main(command)
    except SystemExit as stopped:
        code = stopped.code
    assert code == 2
    out, err = capsys.readouterr()
    assert "serving" not in out
    assert err.splitlines() == [
        "configuration error: .env: not UTF-8 text (byte 52 cannot be read); "
        "save the file as UTF-8, one VARIABLE=value a line"
    ]


def test_serve_with_a_busy_simulator_port_says_so_and_starts_nothing(
    bare_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The simulator child failed to bind and exited: serve ended in a RuntimeError traceback,
    # or, when what held the port answered /_sim/health (another simulator), went on serving
    # against it, its banner naming it as its own simulator.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        code = main(["serve", "--port", "0", "--simulator", "--simulator-port", str(busy)])
    assert code == 2
    out, err = capsys.readouterr()
    assert "serving" not in out
    assert err.splitlines() == [
        f"paytabs-guard serve: the simulator's 127.0.0.1 port {busy} is already in use; "
        "stop what listens there or choose another with --simulator-port"
    ]


@pytest.mark.parametrize("variable", ["PUBLIC_BASE_URL", "PAYTABS_BASE_URL"])
def test_a_base_url_with_a_password_in_it_is_refused_without_showing_it(
    bare_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
) -> None:
    # Accepted: the return URL under PUBLIC_BASE_URL, https://shop:s3cret@pay.example.com/
    # payments/v2/return, went to PayTabs with every payment and from there into every
    # shopper's browser, password and all.
    monkeypatch.setenv(variable, "https://shop:s3cret@pay.example.com")
    monkeypatch.setenv("PAYTABS_PROFILE_ID", "1")
    monkeypatch.setenv("PAYTABS_SERVER_KEY", "server-key-for-a-test")
    with pytest.raises(SystemExit) as stopped:
        main(["config", "check"])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"configuration error: {variable}: 'https://shop:***@pay.example.com' must carry no "
        "user or password"
    )
    assert "s3cret" not in line
