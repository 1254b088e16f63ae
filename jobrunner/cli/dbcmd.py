"""`jobrunner db migrate|version`: the schema, explicitly (several hosts on one PostgreSQL)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobrunner.cli.context import no_database, state
from jobrunner.cli.output import print_json

db_app = typer.Typer(help="Create or upgrade the database's schema, or say where it stands.", no_args_is_help=True)


@db_app.command("migrate")
def migrate_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create or upgrade the schema.

    Every command does it on first use; daemons on many hosts starting at once migrate it once,
    under a lock.
    """
    from jobrunner.secrets import redact_target
    from jobrunner.store.migrations import SCHEMA_VERSION

    app_state = state(ctx)
    app_state.store  # noqa: B018 - opening migrates, under an advisory lock on PostgreSQL
    report = {"database": redact_target(app_state.db_target), "version": SCHEMA_VERSION, "latest": SCHEMA_VERSION}
    if as_json:
        print_json(report)
    else:
        typer.echo(f"database {report['database']}: schema v{SCHEMA_VERSION}, up to date")


@db_app.command("version")
def version_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say which schema version the database has.

    Also which version this jobrunner writes; changes nothing.
    """
    from jobrunner.secrets import redact_target
    from jobrunner.store import open_store
    from jobrunner.store.migrations import SCHEMA_VERSION, current_version

    app_state = state(ctx)
    if app_state.database_missing:
        raise no_database(app_state.db_target)
    store = open_store(app_state.db_target, migrate=False)
    try:
        version = current_version(store)
    finally:
        store.close()
    report = {"database": redact_target(app_state.db_target), "version": version, "latest": SCHEMA_VERSION}
    if as_json:
        print_json(report)
        return
    if version == SCHEMA_VERSION:
        state_text = "up to date"
    elif version > SCHEMA_VERSION:
        state_text = f"newer than this jobrunner (v{SCHEMA_VERSION}): upgrade jobrunner"
    else:
        state_text = f"this jobrunner writes v{SCHEMA_VERSION}: run `jobrunner db migrate`"
    typer.echo(f"database {report['database']}: schema v{version}, {state_text}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
