"""The CLI's contract, fuzzed (issue 13): random argv built from the real option set of every
command that does not block, with hostile values (huge and negative numbers, empty strings,
NUL, lone surrogates, deep JSON, long strings, unknown ids).

Whatever the input: the exit code means something (0, or 2 for a usage error, or the
command's documented codes), an error is one line on stderr, nothing prints a traceback, a
refused or read-only command creates no database file, and `list --json` still works on the
database afterwards. Seeded (derandomized) with a few hundred examples in the normal suite;
`pytest tests/test_fuzz_cli.py --hypothesis-profile long` runs thousands.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from jobrunner.cli.app import app
from tests.conftest import run_jobrunner

#: commands a fuzzer may run: none blocks, none writes outside the database (systemd install
#: writes unit files; daemon, tui, wait and logs --follow block)
COMMANDS = {
    ("submit",): {0, 2}, ("list",): {0, 2}, ("show",): {0, 2}, ("retry",): {0, 2},
    ("cancel",): {0, 2}, ("purge",): {0, 2}, ("stats",): {0, 2}, ("logs",): {0, 2},
    ("progress",): {0, 2}, ("pause",): {0, 2}, ("resume",): {0, 2}, ("priority",): {0, 2},
    ("status",): {0, 2, 3}, ("doctor",): {0, 1, 2},
    ("schedule", "add"): {0, 2}, ("schedule", "list"): {0, 2}, ("schedule", "pause"): {0, 2},
    ("schedule", "resume"): {0, 2}, ("schedule", "remove"): {0, 2}, ("schedule", "run"): {0, 2},
    ("edit",): {0, 2}, ("dlq", "export"): {0, 2},  # edit alone opens $EDITOR: `true` here (see the env)
}  # fmt: skip
#: commands that may create a database when they succeed
ADDING = {("submit",), ("schedule", "add"), ("schedule", "run")}
SKIP_OPTIONS = {"--follow", "--help", "--from-file", "-f", "--install-completion", "--show-completion"}

ROOT_COMMAND = typer.main.get_command(app)


def _command(path: tuple[str, ...]) -> Any:
    command: Any = ROOT_COMMAND
    for name in path:
        command = command.commands[name]
    return command


deep_json = st.integers(min_value=50, max_value=3000).map(lambda n: "[" * n + "]" * n)
hostile = st.one_of(
    st.sampled_from(["", " ", "-", "--", "0", "-1", "1e12", "1e308", "inf", "nan", "NaN", "-0",
                     "18446744073709551616", "9223372036854775808", "-9223372036854775809",
                     "99999999999999999999999999", "1", "2", "3", "42", "0.5", "10m", "1h30m", "7x",
                     "9999-12-31T23:59:59", "0001-01-01", "2026-13-45", "now", "a=b", "a=", "=b",
                     "n=1e400", "x={}", "k=[[[[[]]]]]", "critical", "low", "-5", "10", "mon",
                     "0 3 * * *", "@daily", "*/0 * * * *", "Mars/Olympus", "Europe/Berlin",
                     "tests.jobfuncs:add", "pkg.mod:nope", "true", "/nonexistent", ".", "x\x00y",
                     "\ud800", "\udcff", "é", "😀", "a" * 5000, "%", "100%", "140%", "\n", "\t"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=40),
    deep_json,
    deep_json.map(lambda text: f"k={text}"),
)


@st.composite
def argvs(draw: st.DrawFn, paths: list[tuple[str, ...]] | None = None) -> tuple[tuple[str, ...], list[str]]:
    path = draw(st.sampled_from(sorted(paths or COMMANDS)))
    command = _command(path)
    argv = list(path)
    options = [p for p in command.params if p.param_type_name == "option" and not set(p.opts) & SKIP_OPTIONS]
    for option in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        name = draw(st.sampled_from(option.opts))
        argv.append(name)
        if not option.is_flag:
            argv.append(draw(hostile))
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    for argument in arguments:
        count = draw(st.integers(min_value=0, max_value=3 if argument.nargs != 1 else 1))
        argv += [draw(hostile) for _ in range(count)]
    if path == ("submit",) and draw(st.booleans()):
        argv += ["--", *draw(st.lists(hostile, min_size=1, max_size=3))]
    return path, argv


_TEMPLATE: Path | None = None


def _template() -> Path:
    """A small database (a few jobs in several states, a schedule), made once and copied."""
    global _TEMPLATE
    if _TEMPLATE is None:
        folder = Path(tempfile.mkdtemp(prefix="jobrunner-fuzz-template-"))
        db = folder / "jobs.db"
        runner = CliRunner()
        env = {"JOBRUNNER_DB": str(db), "JOBRUNNER_CONFIG": ""}
        for args in (["submit", "--", "true"], ["submit", "--name", "x", "--", "echo", "hi"],
                     ["submit", "--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2"],
                     ["schedule", "add", "tick", "--every", "1h", "--", "true"], ["cancel", "2"]):  # fmt: skip
            result = runner.invoke(app, args, env=env, catch_exceptions=False)
            assert result.exit_code == 0, (args, result.output)
        _TEMPLATE = db
    return _TEMPLATE


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@contextlib.contextmanager
def _database_folder(home: Path, existing: bool) -> Iterator[tuple[Path, Path, set[str]]]:
    """A fresh folder for one example: (folder, its jobs.db path, the files in it before the
    command), the small template database copied in when `existing`."""
    folder = Path(tempfile.mkdtemp(prefix="jobrunner-fuzz-", dir=home))
    try:
        db = folder / "jobs.db"
        if existing:
            shutil.copy(_template(), db)
        yield folder, db, _files(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _assert_contract(code: int, stderr: str, allowed: set[int], shown: str) -> None:
    """A meaningful exit code, no traceback, and a usage error in one line."""
    assert code in allowed, shown
    assert "Traceback" not in stderr, shown
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("jobrunner: error: "), shown


@pytest.mark.sqlite_only(reason="hundreds of examples, each on a copy of a template SQLite file; the CLI contract is backend-neutral")
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=argvs(), existing=st.booleans())
def test_any_argv_gets_a_meaningful_exit_one_line_and_no_damage(home, case, existing):
    path, argv = case
    with _database_folder(home, existing) as (folder, db, before):
        env = {"JOBRUNNER_DB": str(db), "JOBRUNNER_CONFIG": "", "JOBRUNNER_JOB_ID": "", "JOBRUNNER_PROGRESS": "",
               "VISUAL": "", "EDITOR": "true"}  # edit, retry --edit: an editor that saves the file unchanged
        result = CliRunner().invoke(app, argv, env=env, catch_exceptions=True)
        shown = f"argv={argv!r} exit={result.exit_code} stderr={result.stderr!r} out={result.stdout[-300:]!r}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"an exception escaped: {result.exception!r}; {shown}") from result.exception
        _assert_contract(result.exit_code, result.stderr, COMMANDS[path], shown)
        assert "Traceback" not in result.stdout, shown
        if not existing and (result.exit_code != 0 or path not in ADDING):
            assert _files(folder) == before, f"files created: {_files(folder) - before}; {shown}"
        if db.exists():
            listed = CliRunner().invoke(app, ["list", "--json", "--limit", "0"], env=env, catch_exceptions=True)
            assert listed.exit_code == 0, f"list --json afterwards: {listed.stderr!r}; {shown}"
            json.loads(listed.stdout)


def test_the_fuzzer_knows_every_command_that_does_not_block():
    """A new command is fuzzed, or excluded here on purpose."""
    blocking_or_outside = {("daemon",), ("tui",), ("wait",), ("systemd", "unit"), ("systemd", "install"), ("serve",),
                           ("web",)}
    every = {(name,) for name in ROOT_COMMAND.commands if not hasattr(ROOT_COMMAND.commands[name], "commands")}
    for group in ("schedule", "systemd", "dlq"):
        every |= {(group, name) for name in ROOT_COMMAND.commands[group].commands}
    assert every - blocking_or_outside == set(COMMANDS)


FAST = sorted(path for path in COMMANDS if path[0] in ("submit", "list"))


def _passable(argv: list[str]) -> bool:
    """What a real argv can hold: no NUL, no lone surrogate."""
    return all("\x00" not in a and not any(0xD800 <= ord(c) <= 0xDFFF for c in a) for a in argv)


@pytest.mark.sqlite_only(reason="dozens of examples, each on a copy of a template SQLite file; the CLI contract is backend-neutral")
@settings(max_examples=max(settings.default.max_examples // 8, 10),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(case=argvs(FAST).filter(lambda case: _passable(case[1])), existing=st.booleans())  # drawn among them, not filtered
def test_the_console_scripts_fast_path_keeps_the_same_contract(home, case, existing):
    """`jobrunner submit` and `list` usually run without Typer (cli/fast.py): fuzz the real
    process too, so both paths answer alike."""
    _path, argv = case
    with _database_folder(home, existing) as (folder, db, before):
        result = run_jobrunner(*argv, env={"JOBRUNNER_DB": str(db), "JOBRUNNER_CONFIG": ""}, cwd=folder)
        shown = f"argv={argv!r} exit={result.returncode} stderr={result.stderr!r}"
        _assert_contract(result.returncode, result.stderr, {0, 2}, shown)
        if not existing and result.returncode != 0:
            assert _files(folder) == before, f"files created: {_files(folder) - before}; {shown}"
