"""`jobrunner serve`: the HTTP API. FastAPI and uvicorn load only when the command runs."""

from __future__ import annotations

from typing import Annotated

import typer

from jobrunner.cli.context import state


def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(
        "--host", metavar="ADDRESS",
        help="The address to listen on [default: 127.0.0.1, or [serve] host]; another than this machine's needs a token.",
    )] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=0, max=65535, metavar="PORT", help="The port [default: 8765, or [serve] port; 0: any free one].",
    )] = None,
    token_env: Annotated[str | None, typer.Option(
        "--token-env", metavar="NAME",
        help="The environment variable holding the token that may read and write [default: JOBRUNNER_API_TOKEN].",
    )] = None,
    read_only_token_env: Annotated[str | None, typer.Option(
        "--read-only-token-env", metavar="NAME",
        help="The environment variable holding a token that may only read [default: JOBRUNNER_API_READ_TOKEN].",
    )] = None,
) -> None:
    """Serve the HTTP API for programs and dashboards.

    Submit, list, steer and follow jobs over HTTP: the CLI's JSON, and live events (Server-Sent
    Events). Without a token it listens on 127.0.0.1 only. The API is documented at /docs once it runs.
    """
    from jobrunner.serve.run import serve

    raise typer.Exit(serve(state(ctx), host, port, token_env, read_only_token_env))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
