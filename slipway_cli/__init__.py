"""``slipway``: the command line of Slipway's REST API (``/api/v1``).

A client only: it talks HTTP to a Slipway server with an API key and imports nothing of
the server (no Flask, no SQLAlchemy), so that it starts fast. The standard library and
click are all it needs.
"""

__version__ = "0.1.0"
