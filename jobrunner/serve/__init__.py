"""`jobrunner serve`: the HTTP API (FastAPI on uvicorn) over the same store functions and JSON
as the CLI. Imported only by `jobrunner serve` and by programs that embed `create_app`: no
other command pays for FastAPI.

    app.py        create_app(settings): the routers, middleware and error handlers
    settings.py   ServeSettings: the database, config, tokens and limits of one server
    guard.py      the ASGI middleware every request passes first: host, origin, token, body size
    errors.py     every error as {"error": "one line"} with its status code
    schemas.py    the JSON shapes, for the OpenAPI schema (responses are the CLI's dicts as they are)
    jobs.py, submit.py, logs.py, system.py, events.py, metrics.py: the routes, per noun
    run.py        bind, then run uvicorn
"""
