"""Drives the official OpenAI Python SDK for the integration tests (tests/tests/openai_sdk.rs).

    python openai_driver.py BASE_URL

Reads one JSON command per line on stdin and answers each with one JSON line on stdout:

    {"api": "chat" | "responses", "stream": true | false}

* ``chat``, not streaming: ``client.chat.completions.with_raw_response.create(...)``;
  streaming: the same with ``stream=True, stream_options={"include_usage": True}``, every
  chunk read, the usage the SDK parsed from the last chunk that had one.
* ``responses``, not streaming: ``client.responses.with_raw_response.create(...)``;
  streaming: ``stream=True``, every event read, the usage of the SDK's
  ``response.completed`` event.

An answer: ``{"ok": true, "request_id": <the x-request-id the SDK saw>, "model": ...,
"usage": {...the SDK's usage object, as the SDK parsed it...}}``, or ``{"ok": false, ...}``.
The first line written is ``{"sdk": "openai-python", "version": ...}``.
"""

import json
import sys
import traceback

import openai

MESSAGES = [{"role": "user", "content": "What is two plus two?"}]


def usage_of(usage):
    """The SDK's usage object as JSON (``None`` when the SDK saw none)."""
    return None if usage is None else usage.model_dump(mode="json")


def run(client, command):
    api, stream = command["api"], command["stream"]
    if api == "chat":
        params = {"model": "gpt-4.1", "messages": MESSAGES}
        if stream:
            params.update(stream=True, stream_options={"include_usage": True})
        raw = client.chat.completions.with_raw_response.create(**params)
        request_id = raw.headers.get("x-request-id")
        if not stream:
            completion = raw.parse()
            return answer(request_id, completion.model, completion.usage)
        usage, model, chunks = None, None, 0
        for chunk in raw.parse():
            chunks += 1
            model = chunk.model
            if chunk.usage is not None:
                usage = chunk.usage
        return answer(request_id, model, usage, chunks=chunks)
    if api == "responses":
        params = {"model": "gpt-5", "input": "What is two plus two?"}
        raw = client.responses.with_raw_response.create(stream=stream, **params)
        request_id = raw.headers.get("x-request-id")
        if not stream:
            response = raw.parse()
            return answer(request_id, response.model, response.usage)
        completed, events = None, 0
        for event in raw.parse():
            events += 1
            if event.type == "response.completed":
                completed = event.response
        return answer(request_id, completed.model, completed.usage, chunks=events)
    raise ValueError(f"unknown api {api!r}")


def answer(request_id, model, usage, **extra):
    return {"ok": True, "request_id": request_id, "model": model, "usage": usage_of(usage), **extra}


def main():
    client = openai.OpenAI(
        base_url=sys.argv[1],
        api_key="sk-openai-sdk-test-key",
        max_retries=0,
        timeout=30.0,
    )
    print(json.dumps({"sdk": "openai-python", "version": openai.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = run(client, json.loads(line))
        except Exception as error:  # the test reports it
            reply = {
                "ok": False,
                "error": type(error).__name__,
                "detail": "".join(traceback.format_exception(error)),
            }
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
