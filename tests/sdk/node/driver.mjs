// Drives the official Anthropic TypeScript SDK for the integration tests
// (tests/tests/sdk_clients.rs); the same line protocol as ../python/driver.py:
//
//   node driver.mjs BASE_URL
//
// stdin:  {"op": "stream" | "create" | "abort", "params": {...}, "abort_after": N}
// stdout: {"ok": true, "request_id": ..., "message": {...}} or
//         {"ok": false, "error": <class>, "status": <int|null>, "request_id": ..., "detail": ...}
// The first line written is {"sdk": "typescript", "version": ...}.

import { createInterface } from 'node:readline';
import Anthropic from '@anthropic-ai/sdk';
import { VERSION } from '@anthropic-ai/sdk/version';

function messageSummary(message) {
  const usage = message.usage;
  return {
    id: message.id,
    model: message.model,
    stop_reason: message.stop_reason,
    content: message.content.map((block) => {
      if (block.type === 'text') return { type: 'text', text: block.text };
      if (block.type === 'tool_use') return { type: 'tool_use', name: block.name, input: block.input };
      return { type: block.type };
    }),
    usage: {
      input_tokens: usage.input_tokens,
      output_tokens: usage.output_tokens,
      cache_creation_input_tokens: usage.cache_creation_input_tokens ?? null,
      cache_read_input_tokens: usage.cache_read_input_tokens ?? null,
    },
  };
}

async function run(client, command) {
  const { op, params } = command;
  if (op === 'create') {
    const { data, response } = await client.messages.create(params).withResponse();
    return { ok: true, request_id: response.headers.get('x-request-id'), message: messageSummary(data) };
  }
  if (op === 'stream') {
    const stream = client.messages.stream(params);
    const { response } = await stream.withResponse();
    let events = 0;
    for await (const _event of stream) events += 1;
    const message = await stream.finalMessage();
    return {
      ok: true,
      request_id: response.headers.get('x-request-id'),
      events,
      message: messageSummary(message),
    };
  }
  if (op === 'abort') {
    const stream = client.messages.stream(params);
    const { response } = await stream.withResponse();
    let events = 0;
    for await (const _event of stream) {
      events += 1;
      if (events >= command.abort_after) {
        stream.abort();
        break;
      }
    }
    return { ok: true, request_id: response.headers.get('x-request-id'), events, aborted: true };
  }
  throw new Error(`unknown op ${op}`);
}

async function main() {
  const client = new Anthropic({
    baseURL: process.argv[2],
    apiKey: 'sk-ant-sdk-test-key',
    maxRetries: 0,
    timeout: 30_000,
  });
  const say = (value) => process.stdout.write(JSON.stringify(value) + '\n');
  say({ sdk: 'typescript', version: VERSION });
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    let answer;
    try {
      answer = await run(client, command);
    } catch (error) {
      if (error instanceof Anthropic.APIError) {
        answer = {
          ok: false,
          error: error.constructor.name,
          status: error.status ?? null,
          request_id: error.headers?.get?.('x-request-id') ?? null,
          detail: error.error ?? String(error),
        };
      } else {
        answer = { ok: false, error: error?.constructor?.name ?? 'Error', status: null, request_id: null, detail: String(error?.stack ?? error) };
      }
    }
    say(answer);
  }
}

main().catch((error) => {
  process.stderr.write(String(error?.stack ?? error) + '\n');
  process.exit(1);
});
