"""Hold an answer to its OpenAPI model: every field of the model, no other, valid."""

from __future__ import annotations


def shaped(model_name: str, body: dict) -> dict:
    from app.web.api import schemas

    model = getattr(schemas, model_name)
    assert set(body) == set(model.model_fields), (model_name, set(body) ^ set(model.model_fields))
    model.model_validate(body)
    return body
