"""Backends against a local server speaking Gemini's (Vertex AI and API-key) and OpenAI's REST APIs."""

from __future__ import annotations

import json

import pytest
from tests.fakes.llm_fake_server import Action, FakeLlmServer

from adapters.llm import LlmError, LlmRequest, LlmSettings, open_backend
from adapters.llm.prompting import load_prompt
from transforms.label.rules_backend import RulesBackend

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"],
          "additionalProperties": False}
REQUEST = LlmRequest(prompt="Describe SELECT 1", schema=SCHEMA, schema_name="question", system="Be brief.", sample=2)


def _reply(text: str):
    return lambda call: Action(text=text)


def test_gemini_on_vertex_ai_calls_the_publisher_model_path_with_a_bearer_token():
    with FakeLlmServer(_reply('{"question": "Why?"}')) as server:
        backend = open_backend(LlmSettings(backend="gemini", model="gemini-2.5-flash", project="proj",
                                           location="europe-west4", endpoint=server.url))
        reply = backend.complete(REQUEST)
    call = server.calls[0]
    assert call.path == ("/v1beta1/projects/proj/locations/europe-west4/publishers/google/models/"
                         "gemini-2.5-flash:generateContent")
    assert call.headers["Authorization"].startswith("Bearer ")
    assert reply.text == '{"question": "Why?"}' and reply.prompt_tokens > 0 and reply.completion_tokens > 0


def test_gemini_sends_the_reply_schema_sampling_settings_and_system_instruction():
    with FakeLlmServer(_reply('{"question": "Why?"}')) as server:
        settings = LlmSettings(backend="gemini", project="p", endpoint=server.url, temperature=0.3)
        open_backend(settings).complete(REQUEST)
    config = server.calls[0].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert config["temperature"] == 0.3 and config["seed"] == 2
    assert server.calls[0].body["systemInstruction"]["parts"][0]["text"] == "Be brief."


def test_gemini_api_key_mode_calls_v1beta_with_the_key_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("TEST_GEMINI_KEY", "k-123")
    with FakeLlmServer(_reply('{"question": "Why?"}')) as server:
        backend = open_backend(LlmSettings(backend="gemini", api_key_env="TEST_GEMINI_KEY", endpoint=server.url))
        backend.complete(REQUEST)
    call = server.calls[0]
    assert call.path in ("/v1beta/models/gemini-2.5-flash:generateContent",  # google-genai 1.x-2.x
                         "/v1/models/gemini-2.5-flash:generateContent")  # google-genai 3.x
    assert call.headers["x-goog-api-key"] == "k-123"


def test_gemini_without_project_or_key_is_a_clear_error():
    with pytest.raises(LlmError, match="--llm_project"):
        open_backend(LlmSettings(backend="gemini"))


def test_openai_backend_asks_for_strict_json_schema_output_and_reads_usage(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test")
    with FakeLlmServer(_reply('{"question": "Why?"}')) as server:
        backend = open_backend(LlmSettings(backend="openai", model="m", endpoint=server.url + "/v1",
                                           api_key_env="TEST_OPENAI_KEY"))
        reply = backend.complete(REQUEST)
    call = server.calls[0]
    assert call.path == "/v1/chat/completions"
    assert call.headers["Authorization"] == "Bearer sk-test"
    assert call.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "question", "schema": SCHEMA, "strict": True}}
    assert [m["role"] for m in call.body["messages"]] == ["system", "user"]
    assert call.body["seed"] == 2
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0


@pytest.mark.parametrize("backend", ["openai", "gemini"])
@pytest.mark.parametrize("status,retryable", [(429, True), (500, True), (503, True), (400, False), (404, False)])
def test_http_errors_say_whether_a_retry_may_help(backend, status, retryable):
    with FakeLlmServer(lambda call: Action(kind="status", status=status)) as server:
        settings = LlmSettings(backend=backend, project="p" if backend == "gemini" else None, endpoint=server.url)
        with pytest.raises(LlmError) as caught:
            open_backend(settings).complete(REQUEST)
    assert caught.value.retryable is retryable and caught.value.status == status


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_a_body_that_is_not_json_is_a_retryable_error(backend):
    with FakeLlmServer(lambda call: Action(kind="garbage")) as server:
        settings = LlmSettings(backend=backend, project="p" if backend == "gemini" else None, endpoint=server.url)
        with pytest.raises(LlmError) as caught:
            open_backend(settings).complete(REQUEST)
    assert caught.value.retryable


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_a_stalled_server_times_out_as_a_retryable_error(backend):
    with FakeLlmServer(lambda call: Action(kind="stall")) as server:
        settings = LlmSettings(backend=backend, project="p" if backend == "gemini" else None, endpoint=server.url,
                               timeout_s=0.3)
        with pytest.raises(LlmError, match="timed out") as caught:
            open_backend(settings).complete(REQUEST)
    assert caught.value.retryable


def test_rules_backend_answers_question_prompts_from_the_sql_alone():
    request = load_prompt("question").request(
        stage="questions", inputs={"sql": "SELECT name FROM artist", "dialect": "sqlite"},
        dialect="SQLite", schema="", sql="SELECT name FROM artist", style="", persona="")
    reply = RulesBackend(LlmSettings(backend="rules")).complete(request)
    assert json.loads(reply.text) == {"question": "List the name of every artist."}
    assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)


def test_rules_backend_refuses_prompts_it_cannot_answer():
    with pytest.raises(LlmError, match="cannot answer"):
        RulesBackend(LlmSettings(backend="rules")).complete(LlmRequest(prompt="x", schema_name="segment"))


def test_a_server_that_rejects_json_schema_gets_json_object_with_the_schema_from_then_on():
    def answer(call):
        if call.body["response_format"]["type"] == "json_schema":  # llama-cpp-python's server does this
            return Action(kind="status", status=500,
                          text="response_format.type: Input should be 'text' or 'json_object' (json_schema)")
        return Action(text='{"question": "Why?"}')

    with FakeLlmServer(answer) as server:
        backend = open_backend(LlmSettings(backend="openai", endpoint=server.url))
        first, second = backend.complete(REQUEST), backend.complete(REQUEST)
    assert first.text == second.text == '{"question": "Why?"}'
    assert [c.body["response_format"]["type"] for c in server.calls] == ["json_schema", "json_object", "json_object"]
    assert server.calls[1].body["response_format"]["schema"] == SCHEMA


@pytest.mark.parametrize("module_name", [
    "adapters.llm", "adapters.llm.cache", "adapters.llm.gemini", "adapters.llm.handler", "adapters.llm.openai_compat",
    "adapters.llm.prompting", "transforms.label.questions", "transforms.sql.table_schema",
])
def test_the_examples_in_docstrings_hold(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name))
    assert result.failed == 0
