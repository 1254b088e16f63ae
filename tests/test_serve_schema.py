"""schemathesis against the API's own OpenAPI schema: every endpoint, with valid and invalid
requests, answers without a 5xx and as its schema says (status, content type, body).

Seeded and a few hundred examples in all (about 20 per endpoint), on a real SQLite file that
holds a job of each kind of state and a schedule. Streams end after a moment here
(`stream_limit_s`), so a followed log or the event stream cannot hold a case open.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import sql
from tests.servehelpers import settings_for

TOKEN = "schema-" + "t" * 32
#: No 5xx, and every answer as the schema says. Not negative_data_rejection: FastAPI ignores query
#: parameters it does not know, as HTTP servers do, which that check counts as accepting bad data.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_schema(cli, db_path):
    for args in (["--", "true"], ["--queue", "mail", "--tag", "t", "--", "echo", "hi"], ["--in", "1h", "--", "true"],
                 ["--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2"]):  # fmt: skip
        cli.submit(*args)
    cli.ok("cancel", "1")
    cli.ok("schedule", "add", "tick", "--every", "1h", "--", "true")
    # a live daemon's row (this process, its heartbeat ahead for the whole run): /healthz answers 200,
    # as it does with a daemon up; its 503 without one is by design, and tested in test_serve_api
    sql(db_path, "INSERT INTO daemon (id, host, pid, version, started_at, heartbeat_at, workers, busy, queues, state) "
        "VALUES (?, ?, ?, '0', ?, ?, 2, 0, '[]', 'running')",
        (f"{socket.gethostname()}:{os.getpid()}:t", socket.gethostname(), os.getpid(), time.time(), time.time() + 3600))
    from jobrunner.serve.app import create_app

    app = create_app(settings_for(db_path, token=TOKEN, stream_limit_s=0.05, poll_s=0.01))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=20, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_endpoint_keeps_to_its_schema_and_never_fails(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
