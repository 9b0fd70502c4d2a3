"""Options → model settings: one mapping and one check for ``--llm*``, ``--weak_llm*`` and ``--consistency_llm*``.

Questions, synthesis/evolution and preference sampling each take a model from the
command line. The provider options (``model``, ``endpoint``, ``project``,
``location``, ``api_key_env``, prices) have a prefix per role; the request
machinery (requests in flight, rpm, retries, timeout, backoff, cache) is shared and
always comes from ``--llm_*``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from adapters.llm import LlmSettings
from transforms.core.errors import UserError


def model_settings(values: argparse.Namespace, prefix: str = "llm", **fields: Any) -> LlmSettings:
    """``LlmSettings`` from the ``--<prefix>*`` options; ``fields`` override (a role's own temperature, say).

    >>> values = argparse.Namespace(llm="openai", llm_model="m", llm_endpoint="http://x", llm_project=None,
    ...     llm_location=None, llm_api_key_env=None, llm_temperature=0.7, llm_max_in_flight=8, llm_rpm=None,
    ...     llm_retries=3, llm_timeout_s=30.0, llm_backoff_s=1.0, llm_cache=None, llm_price_in=0.0,
    ...     llm_price_out=0.0)
    >>> model_settings(values).endpoint, model_settings(values, temperature=0.0).temperature
    ('http://x', 0.0)
    """
    def own(name: str) -> Any:
        return getattr(values, f"{prefix}_{name}", None)

    settings = dict(
        backend=getattr(values, prefix),
        model=own("model"),
        endpoint=own("endpoint"),
        project=own("project"),
        location=own("location"),
        api_key_env=own("api_key_env"),
        temperature=values.llm_temperature,
        max_in_flight=values.llm_max_in_flight,
        rpm=values.llm_rpm,
        retries=values.llm_retries,
        timeout_s=values.llm_timeout_s,
        backoff_s=values.llm_backoff_s,
        cache=values.llm_cache,
        price_in=own("price_in"),
        price_out=own("price_out"),
    )
    settings.update(fields)
    return LlmSettings(**settings)


def check_model(flag: str, settings: LlmSettings, project_flag: Optional[str] = None) -> None:
    """Refuse, as a user error, a model that cannot be reached: a key variable that is not set, Gemini
    without a project or key, OpenAI-compatible without an endpoint or key. ``flag`` is ``--llm``,
    ``--weak_llm`` or ``--consistency_llm``; its ``_api_key_env`` and ``_endpoint`` options are named."""
    key_flag, endpoint_flag = f"{flag}_api_key_env", f"{flag}_endpoint"
    project_flag = project_flag or f"{flag}_project"
    if settings.api_key_env and settings.api_key_env not in os.environ:
        raise UserError(f"{key_flag} {settings.api_key_env}: that variable is not set")
    if settings.backend == "gemini" and not (settings.project or settings.api_key_env):
        raise UserError(f"{flag} gemini needs {project_flag} (Vertex AI) or {key_flag} (a Gemini API key)")
    if settings.backend == "openai" and not (settings.endpoint or settings.api_key_env):
        raise UserError(f"{flag} openai needs {key_flag} for OpenAI, or {endpoint_flag} for a local server")


def consistency_llm_settings(values: argparse.Namespace, llm: LlmSettings) -> LlmSettings:
    """The round-trip model: ``--consistency_llm*`` where given, else the ``--llm*`` settings; temperature 0.

    A different backend does not inherit ``--llm_model``, ``--llm_endpoint`` or
    ``--llm_api_key_env`` (they belong to the other provider).
    """
    backend = values.consistency_llm or llm.backend
    same = backend == llm.backend
    return llm._replace(
        backend=backend,
        model=values.consistency_llm_model or (llm.model if same else None),
        endpoint=values.consistency_llm_endpoint or (llm.endpoint if same else None),
        api_key_env=values.consistency_llm_api_key_env or (llm.api_key_env if same else None),
        temperature=0.0,
    )
