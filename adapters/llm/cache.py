"""Reply cache: one small JSON file per (backend, model, prompt, parameters, sample).

Entries live under ``--llm_cache`` on any Beam filesystem (a local directory, ``gs://``),
so a re-run of the same inputs — on this machine or on another Dataflow job — makes
zero model calls and, since everything downstream is deterministic, writes
byte-identical output. Entries are written to a temporary name and renamed, so a
crashed writer never leaves a half entry under a real key; an unreadable entry counts
as a miss and is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from adapters.llm import LlmReply, LlmRequest

_LOGGER = logging.getLogger(__name__)
_PLAIN = CompressionTypes.UNCOMPRESSED


def cache_key(backend: str, model: str, request: LlmRequest, temperature: float, max_output_tokens: int) -> str:
    """A hex digest of everything that decides a reply (not the endpoint, not the metrics stage).

    >>> r = LlmRequest(prompt="Hi", schema={"type": "object"}, sample=0)
    >>> cache_key("openai", "m", r, 0.7, 512) == cache_key("openai", "m", r._replace(stage="x"), 0.7, 512)
    True
    >>> cache_key("openai", "m", r, 0.7, 512) == cache_key("openai", "m", r._replace(sample=1), 0.7, 512)
    False
    """
    material = {
        "backend": backend,
        "model": model,
        "prompt": request.prompt,
        "system": request.system,
        "schema": request.schema,
        "schema_name": request.schema_name,
        "inputs": dict(request.inputs) if backend == "rules" else None,
        "temperature": temperature,
        "max_output_tokens": max_output_tokens,
        "sample": request.sample,
    }
    payload = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LlmCache:
    """Reads and writes reply files under ``root`` (``<root>/<ab>/<key>.json``)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def path(self, key: str) -> str:
        return FileSystems.join(self.root, key[:2], f"{key}.json")

    def get(self, key: str) -> Optional[LlmReply]:
        path = self.path(key)
        try:
            with FileSystems.open(path, compression_type=_PLAIN) as handle:
                data = json.loads(handle.read().decode("utf-8"))
            return LlmReply(str(data["text"]), int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)))
        except Exception:  # noqa: BLE001 - absent or unreadable: a miss
            return None

    def put(self, key: str, reply: LlmReply, backend: str, model: str) -> None:
        path = self.path(key)
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        body = json.dumps(
            {"backend": backend, "model": model, "text": reply.text, "prompt_tokens": reply.prompt_tokens,
             "completion_tokens": reply.completion_tokens},
            ensure_ascii=False, sort_keys=True,
        ).encode("utf-8")
        try:
            with FileSystems.create(temporary, compression_type=_PLAIN) as handle:
                handle.write(body)
            FileSystems.rename([temporary], [path])
        except Exception as error:  # noqa: BLE001 - a cache that cannot write costs calls, not records
            _LOGGER.warning("could not write LLM cache entry %s: %s", path, error)
