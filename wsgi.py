"""The web process: ``gunicorn -k gthread wsgi:app``."""

import gc

from app import create_app

app = create_app(migrations=False)
# What start-up allocated lives as long as the process: keep it out of every full
# garbage collection, which otherwise costs ~100 ms per pass (bench/pages.py).
gc.collect()
gc.freeze()
