"""The WSGI app the API benchmark serves under gunicorn: the portal as configured by the
PORTAL_* environment, plus a bare endpoint that does one UPDATE (the benchmark's yardstick)."""

from sqlalchemy import text

from portal import create_app, db
from portal.extensions import csrf

app = create_app()


@app.post("/bench/bare")
@csrf.exempt
def bare():
    session = db.session()
    session.execute(text("UPDATE bench_counter SET value = value + 1 WHERE id = 1"))
    session.commit()
    return app.response_class('[{"msgid": "bare"}]', status=201, mimetype="application/json")
