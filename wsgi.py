"""The web process: ``gunicorn -k gthread wsgi:app``."""

import gc
import logging

from app import create_app

app = create_app(migrations=False)
# Every line names the request it belongs to (X-Request-Id; "-" outside one): the
# record factory that adds it is installed by create_app.
logging.basicConfig(
    level=logging.INFO, format="%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"
)
# What start-up allocated lives as long as the process: keep it out of every full
# garbage collection, which otherwise costs ~100 ms per pass (bench/pages.py).
gc.collect()
gc.freeze()
