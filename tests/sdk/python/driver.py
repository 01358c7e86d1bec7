"""Drives the official Anthropic Python SDK for the integration tests (tests/tests/sdk_clients.rs).

    python driver.py BASE_URL

Reads one JSON command per line on stdin and answers each with one JSON line on stdout:

    {"op": "stream" | "create" | "abort", "params": {...Messages API params...}, "abort_after": N}

* ``stream``: ``client.messages.stream(**params)``, every event read, then the SDK's own
  final message (``get_final_message()``): its usage is what the SDK accumulated.
* ``create``: ``client.messages.with_raw_response.create(**params)``.
* ``abort``: a stream left after ``abort_after`` events (the response is closed).

An answer: ``{"ok": true, "request_id": <the proxy's x-request-id>, "message": {...}}``, or for
an API error ``{"ok": false, "error": <class>, "status": <int|null>, "request_id": ..., "detail": ...}``.
The first line written is ``{"sdk": "python", "version": ...}``.
"""

import json
import sys
import traceback

import anthropic


def message_summary(message):
    """The parts of the SDK's final message a test compares."""
    usage = message.usage
    content = []
    for block in message.content:
        entry = {"type": block.type}
        if block.type == "text":
            entry["text"] = block.text
        elif block.type == "tool_use":
            entry["name"] = block.name
            entry["input"] = block.input
        content.append(entry)
    return {
        "id": message.id,
        "model": message.model,
        "stop_reason": message.stop_reason,
        "content": content,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
        },
    }


def run(client, command):
    op = command["op"]
    params = command["params"]
    if op == "create":
        raw = client.messages.with_raw_response.create(**params)
        message = raw.parse()
        return {
            "ok": True,
            "request_id": raw.headers.get("x-request-id"),
            "message": message_summary(message),
        }
    if op == "stream":
        with client.messages.stream(**params) as stream:
            request_id = stream.response.headers.get("x-request-id")
            events = sum(1 for _ in stream)
            message = stream.get_final_message()
        return {
            "ok": True,
            "request_id": request_id,
            "events": events,
            "message": message_summary(message),
        }
    if op == "abort":
        seen = 0
        with client.messages.stream(**params) as stream:
            request_id = stream.response.headers.get("x-request-id")
            for _ in stream:
                seen += 1
                if seen >= command["abort_after"]:
                    break
        return {"ok": True, "request_id": request_id, "events": seen, "aborted": True}
    raise ValueError(f"unknown op {op!r}")


def main():
    base_url = sys.argv[1]
    client = anthropic.Anthropic(
        base_url=base_url,
        api_key="sk-ant-sdk-test-key",
        max_retries=0,
        timeout=30.0,
    )
    print(json.dumps({"sdk": "python", "version": anthropic.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            answer = run(client, command)
        except anthropic.APIStatusError as error:
            answer = {
                "ok": False,
                "error": type(error).__name__,
                "status": error.status_code,
                "request_id": error.response.headers.get("x-request-id"),
                "detail": error.body,
            }
        except Exception as error:  # any other failure is the test's to report, not ours
            answer = {
                "ok": False,
                "error": type(error).__name__,
                "status": None,
                "request_id": None,
                "detail": "".join(traceback.format_exception(error)),
            }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
