"""The yardstick of the API benchmark: a minimal Flask app doing the bare minimum of a send's
durable work, one UPDATE of one row and one commit per request, with psycopg. Nothing else:
no portal, no SQLAlchemy, no middleware. Served by gunicorn like the portal.

    BENCH_BARE_DATABASE_URL=postgresql://… gunicorn bench.bare_app:app

The table it updates (bench_counter, one row with id 1) is created by bench/api_send.py."""

import os

import psycopg
from flask import Flask

app = Flask(__name__)
_connection: psycopg.Connection | None = None  # one per worker process: a sync worker serves one request at a time


def _database() -> psycopg.Connection:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BENCH_BARE_DATABASE_URL"])
    return _connection


@app.post("/bare")
def bare():
    connection = _database()
    connection.execute("UPDATE bench_counter SET value = value + 1 WHERE id = 1")
    connection.commit()
    return app.response_class('[{"msgid": "bare"}]', status=201, mimetype="application/json")
