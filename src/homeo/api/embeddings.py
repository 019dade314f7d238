"""`/v1/embeddings`: OpenAI's embeddings API, served by homeo.

`model` names an alias from HOMEO_MODELS (out of the box `embedding`:
all-MiniLM-L6-v2, in process), so calls go through the router like chat
calls. `encoding_format` "float" answers lists of numbers; "base64" answers
little-endian float32 bytes, which is what the official `openai` client asks
for unless told otherwise. The tenant's token budget is checked first and the
tokens embedded are recorded for it, as for /v1/chat/completions.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from homeo.api.deps import requires
from homeo.api.openai_compat import (
    Models,
    Tenant,
    error,
    over_budget,
    status_of,
    unable,
    unknown_model,
)
from homeo.llm.base import ModelError
from homeo.tenancy import current_tenant

router = APIRouter(prefix="/v1", tags=["openai"])

MAX_INPUTS = 2048  # OpenAI's own limit per request


class EmbeddingRequest(BaseModel):
    """The fields homeo acts on; other OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    # Token-id inputs are accepted here only to be refused with a clear message.
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


def _texts(body: EmbeddingRequest) -> list[str]:
    """The texts to embed; ValueError saying what is wrong with `input`."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise ValueError("input is empty: send a string or a list of strings")
    if len(texts) > MAX_INPUTS:
        raise ValueError(f"input has {len(texts)} items; at most {MAX_INPUTS} per request")
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("input as token ids is not supported: send the text itself")
    for index, text in enumerate(texts):
        if not text.strip():
            raise ValueError(f"input[{index}] is empty" if len(texts) > 1 else "input is empty")
    return texts  # type: ignore[return-value]


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


@router.post("/embeddings", response_model=None, dependencies=[requires("member")])
async def embeddings(
    body: EmbeddingRequest, request: Request, catalog: Models, tenant_id: Tenant
) -> JSONResponse:
    try:
        texts = _texts(body)
    except ValueError as problem:
        return error(request, 400, "bad_request", str(problem))
    refused = (unknown_model(request, catalog, body.model)
               or unable(request, catalog, body.model, "embeddings")
               or await over_budget(request, tenant_id))
    if refused is not None:
        return refused
    current_tenant.set(tenant_id)
    try:
        made = await catalog.get(body.model).embed(texts)
    except ModelError as failure:
        status, kind = status_of(failure)
        return error(request, status, kind, str(failure))
    width = len(made.vectors[0])
    if body.dimensions is not None and body.dimensions != width:
        return error(request, 400, "bad_request",
                     f"model {body.model!r} makes {width}-dimension vectors and cannot make"
                     f" {body.dimensions}; leave out `dimensions`")
    answer: dict[str, Any] = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index,
             "embedding": _encoded(vector, body.encoding_format)}
            for index, vector in enumerate(made.vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": made.usage.input_tokens,
                  "total_tokens": made.usage.input_tokens},
    }
    request.app.state.usage.record(tenant_id, "embeddings", body.model, made.usage)
    return JSONResponse(answer)
