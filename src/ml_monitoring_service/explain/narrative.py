"""An optional LLM-written narrative of an incident: likely root cause, evidence, fixes.

Off by default (``narrative.enabled`` in the service set). When on, :func:`narrate` sends the
incident's allowlisted, masked metadata (:mod:`.llm_payload`) to an OpenAI-compatible
``/chat/completions`` endpoint and asks for one JSON object matching :class:`Narrative`'s schema.
The answer is advisory and unverified, so it must never cost an alert: every failure (timeout,
connection error, HTTP error, an answer that is not JSON or not the schema) returns None and logs
one warning naming the endpoint and the reason. The API key travels only in the
``Authorization`` header and never appears in a log line.

At most one retry, and only for a refused connection or a 5xx; a timeout is not retried, so one
call is bounded by about ``timeout_s`` for connecting plus ``timeout_s`` between received bytes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ml_monitoring_service.collectors.resilience import RetryPolicy, call_with_retries
from ml_monitoring_service.config import NarrativeConfig
from ml_monitoring_service.errors import BackendError
from ml_monitoring_service.explain.llm_payload import Masker, incident_payload

logger = logging.getLogger(__name__)

BACKEND = "LLM narrative"
_RETRY = RetryPolicy(attempts=2, backoff_s=0.5)
_FENCED = re.compile(r"^```(?:json)?\s*(?P<body>.*?)\s*```$", re.DOTALL | re.IGNORECASE)

Sentence = Annotated[str, Field(min_length=1, max_length=600)]


class Narrative(BaseModel):
    """What the model must answer; extra keys, wrong types and overlong lists are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    likely_root_cause: str = Field(min_length=1, max_length=1000)
    evidence: list[Sentence] = Field(max_length=10)
    confidence: float = Field(ge=0.0, le=1.0)
    suggested_fixes: list[Sentence] = Field(max_length=10)


class NarrativeFailure(Exception):
    """The endpoint answered, but not with a usable narrative; the message says why."""


def system_prompt() -> str:
    """Instructions for the model, with the JSON schema its answer must match."""
    schema = json.dumps(Narrative.model_json_schema(), separators=(",", ":"))
    return (
        "You are an SRE assistant explaining an anomaly that a monitoring model detected in a set "
        "of microservices. You get the incident's metadata as JSON: scores, the candidate "
        "services and metrics ranked by the detector, their metric deviations and call paths, "
        "and log templates and exception types that appeared or grew during the incident. "
        "Placeholders such as <NUM>, <IP> or <*> stand for masked values. Use only this "
        "evidence and say so when it is thin. Answer ONLY with one JSON object matching this "
        f"JSON schema, no prose and no markdown: {schema}"
    )


def request_body(incident: Mapping[str, Any], settings: NarrativeConfig) -> dict[str, Any]:
    """The chat-completions request for ``incident`` (no credentials: those go in a header)."""
    payload = incident_payload(incident, Masker(settings.mask_patterns))
    return {
        "model": settings.model,
        "messages": [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": "Incident metadata:\n" + json.dumps(payload, indent=1)},
        ],
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "response_format": {"type": "json_object"},
    }


def endpoint(settings: NarrativeConfig) -> str:
    """``{url}/chat/completions``."""
    return f"{settings.url}/chat/completions"


def narrate(
    incident: Mapping[str, Any], settings: NarrativeConfig, api_key: SecretStr | None = None
) -> Narrative | None:
    """The LLM's narrative of ``incident``, or None when disabled or on any failure (warned)."""
    if not settings.enabled:
        return None
    url = endpoint(settings)
    try:
        response = _post(url, request_body(incident, settings), settings.timeout_s, api_key)
        return parse_answer(_decoded(response))
    except BackendError as exc:
        cause = exc.__cause__ or exc
        logger.warning("LLM narrative skipped: POST %s: %s: %s", url, type(cause).__name__, cause)
    except NarrativeFailure as exc:
        logger.warning("LLM narrative skipped: POST %s: %s", url, exc)
    return None


Narrator = Callable[[Mapping[str, Any]], dict[str, Any] | None]


def narrator(settings: NarrativeConfig, api_key: SecretStr | None = None) -> Narrator | None:
    """What the report writer calls per new incident: the narrative as a dict, or None.

    None when the narrative is off, so callers can skip the whole step (no payload is built).
    """
    if not settings.enabled:
        return None

    def narrate_as_dict(incident: Mapping[str, Any]) -> dict[str, Any] | None:
        found = narrate(incident, settings, api_key)
        return None if found is None else found.model_dump()

    return narrate_as_dict


def _post(
    url: str, body: dict[str, Any], timeout_s: float, api_key: SecretStr | None
) -> requests.Response:
    """POST ``body`` and return a 2xx response, or raise BackendError after at most one retry."""
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"

    def send() -> requests.Response:
        response = requests.post(url, json=body, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        return response

    return call_with_retries(
        send, backend=BACKEND, what=f"POST {url}", is_retryable=_is_retryable, policy=_RETRY
    )


def _decoded(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise NarrativeFailure(f"response is not JSON: {response.text[:200]!r}") from None


def _is_retryable(exc: BaseException) -> bool:
    """A refused connection or a 5xx; never a timeout (it would double the wait) or a 4xx."""
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout)


def parse_answer(completion: Any) -> Narrative:
    """The validated narrative in a chat completion; NarrativeFailure says what is wrong."""
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise NarrativeFailure("response has no choices[0].message.content") from None
    if not isinstance(content, str):
        raise NarrativeFailure(f"message content is {type(content).__name__}, not text")
    text = content.strip()
    fenced = _FENCED.match(text)
    if fenced:
        text = fenced.group("body")
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NarrativeFailure(f"answer is not JSON ({exc.msg}): {text[:120]!r}") from None
    try:
        return Narrative.model_validate(answer)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()
        )
        raise NarrativeFailure(f"answer does not match the schema: {problems}") from None
