"""The API's pydantic models, by name (``app.web.api.spec`` and handlers look them up
here). Imported on the first API request only: see ``app.web.api.spec``.

Input models forbid unknown fields (a typo is a 422, not silently ignored); output
models describe what the handlers' ``present`` functions return."""

from app.web.api.schemas.common import *  # noqa: F403
from app.web.api.schemas.databases import *  # noqa: F403
from app.web.api.schemas.deployments import *  # noqa: F403
from app.web.api.schemas.keys import *  # noqa: F403
from app.web.api.schemas.resources import *  # noqa: F403
from app.web.api.schemas.team import *  # noqa: F403
