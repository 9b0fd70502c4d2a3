"""Prompts are files; replies are data: parsed, validated against their schema, never trusted.

``prompts/<name>.txt`` is a ``string.Template`` (``$placeholders``, so JSON braces in the
text need no escaping), ``prompts/<name>.system.txt`` an optional system instruction and
``prompts/<name>.schema.json`` the JSON schema of the reply. They ship as package data.

The validator is a small one written here for the subset of JSON Schema our reply
schemas use (``type``, ``properties``, ``required``, ``additionalProperties: false``,
``items``, ``enum``, ``minItems``/``maxItems``, ``minLength``/``maxLength``): the
``jsonschema`` package would be a dependency on every worker for forty lines of checks,
and an unknown keyword here fails loudly (``SchemaError``) instead of passing silently.
"""

from __future__ import annotations

import functools
import json
import re
import string
from importlib import resources
from typing import Any, Mapping, NamedTuple, Optional

from adapters.llm import LlmRequest

_KNOWN_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "minItems", "maxItems",
     "minLength", "maxLength", "description", "title"}
)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaError(ValueError):
    """A reply schema uses a keyword this validator does not implement."""


class Prompt(NamedTuple):
    """A prompt template with its system instruction and the schema of its reply."""

    name: str
    template: str
    system: Optional[str]
    schema: Mapping[str, Any]

    def render(self, **values: str) -> str:
        """Fill the template; a missing value raises ``KeyError`` (never a half-filled prompt)."""
        return string.Template(self.template).substitute(values)

    def request(self, *, stage: str, sample: int = 0, inputs: Optional[Mapping[str, str]] = None,
                **values: str) -> LlmRequest:
        """An ``LlmRequest`` for this prompt filled with ``values``."""
        return LlmRequest(
            prompt=self.render(**values),
            schema=self.schema,
            schema_name=self.name,
            system=self.system,
            inputs=dict(inputs or {}),
            sample=sample,
            stage=stage,
        )


def _read(name: str) -> Optional[str]:
    path = resources.files("adapters.llm").joinpath("prompts", name)
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def load_prompt(name: str) -> Prompt:
    """``prompts/<name>.txt`` with its ``.system.txt`` and ``.schema.json`` (the schema is required)."""
    template = _read(f"{name}.txt")
    schema_text = _read(f"{name}.schema.json")
    if template is None or schema_text is None:
        raise FileNotFoundError(f"prompt {name!r} needs prompts/{name}.txt and prompts/{name}.schema.json")
    schema = json.loads(schema_text)
    check_schema(schema)
    system = _read(f"{name}.system.txt")
    return Prompt(name, template.rstrip("\n"), system.strip() if system else None, schema)


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``SchemaError`` if ``schema`` uses keywords ``validate`` would ignore."""
    unknown = set(schema) - _KNOWN_KEYWORDS
    if unknown:
        raise SchemaError(f"unsupported JSON Schema keywords: {', '.join(sorted(unknown))}")
    for sub in (schema.get("properties") or {}).values():
        check_schema(sub)
    if isinstance(schema.get("items"), Mapping):
        check_schema(schema["items"])


def validate(value: Any, schema: Mapping[str, Any], path: str = "$") -> Optional[str]:
    """The first way ``value`` breaks ``schema``, or None when it conforms.

    >>> s = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
    ...      "additionalProperties": False}
    >>> validate({"q": "Why?"}, s) is None
    True
    >>> validate({"q": 3}, s)
    '$.q: expected string, got integer'
    >>> validate({}, s)
    '$: missing required property q'
    >>> validate({"q": "a", "x": 1}, s)
    '$: unexpected property x'
    """
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, name) for name in names):
            return f"{path}: expected {'/'.join(names)}, got {_type_name(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} is not one of {schema['enum']!r}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']} characters"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{path}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{path}: more than {schema['maxItems']} items"
        if isinstance(schema.get("items"), Mapping):
            for index, item in enumerate(value):
                problem = validate(item, schema["items"], f"{path}[{index}]")
                if problem:
                    return problem
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                return f"{path}: missing required property {name}"
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in properties:
                    return f"{path}: unexpected property {name}"
        for name, sub in properties.items():
            if name in value:
                problem = validate(value[name], sub, f"{path}.{name}")
                if problem:
                    return problem
    return None


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, ()))


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_reply(text: str, schema: Optional[Mapping[str, Any]]) -> tuple[Any, Optional[str]]:
    """``(value, None)`` for a reply that is JSON matching ``schema``, else ``(None, problem)``.

    A Markdown code fence around the JSON, or prose around one JSON object, is tolerated;
    nothing else is.

    >>> parse_reply('```json\\n{"a": 1}\\n```', {"type": "object"})
    ({'a': 1}, None)
    >>> parse_reply('Sure! {"a": 1}', {"type": "object"})
    ({'a': 1}, None)
    >>> parse_reply('no json here', {"type": "object"})[1]
    'not JSON: no JSON object found'
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = json.loads(stripped)
    except ValueError as error:
        start, end = stripped.find("{"), stripped.rfind("}")
        if start < 0 or end <= start:
            return None, "not JSON: no JSON object found"
        try:
            value = json.loads(stripped[start : end + 1])
        except ValueError:
            return None, f"not JSON: {error}"
    if schema is None:
        return value, None
    problem = validate(value, schema)
    return (None, f"does not match the schema: {problem}") if problem else (value, None)


def repair_request(request: LlmRequest, reply_text: str, problem: str) -> LlmRequest:
    """The one follow-up request that shows the model its unusable reply and asks again."""
    prompt = load_prompt_text("repair")
    rendered = string.Template(prompt).substitute(
        error=problem,
        reply=reply_text[:2000],
        schema=json.dumps(request.schema, indent=2) if request.schema is not None else "(any JSON)",
        prompt=request.prompt,
    )
    return request._replace(prompt=rendered)


@functools.lru_cache(maxsize=None)
def load_prompt_text(name: str) -> str:
    """A prompt file without a schema (``repair.txt``)."""
    text = _read(f"{name}.txt")
    if text is None:
        raise FileNotFoundError(f"prompts/{name}.txt is missing")
    return text.rstrip("\n")
