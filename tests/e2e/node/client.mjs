#!/usr/bin/env node
// An AI SDK chat client for the end-to-end tests: sends one chat turn to a running Mamba `/chat`
// the way `useChat` does, and reports what the SDK made of the response as ONE JSON object.
//
// Usage:
//   node client.mjs --sdk 7|6 --url http://127.0.0.1:PORT/chat
//        [--body '{"model":"gpt-4o"}']        extra body keys (DefaultChatTransport `body`)
//        [--headers '{"X-API-Key":"…"}']      request headers (DefaultChatTransport `headers`)
//        [--messages '[...UIMessage]']        the history before the new user message
//        [--text 'new user message']          appended as a new user message (omit to send
//                                             --messages as they are)
//        [--chat-id ID] [--trigger submit-message|regenerate-message] [--message-id ID]
//        [--abort-after-ms N]                 abort the request after N ms (client disconnect)
//        [--timeout-ms N]                     give up after N ms (default 30000)
//   or:  node client.mjs --job '<JSON object with the same keys in camelCase>'
//   or:  echo '<JSON job>' | node client.mjs --job -
//
// `--sdk 7` uses `ai` 7.0.173; `--sdk 6` uses `ai` 6.0.12 (npm alias `ai6`, the version the
// ai-chatbot frontend locks; its chunk schema is strict and rejects unknown keys); `--sdk 6.0.6`
// uses `ai` 6.0.6 (alias `ai606`), the copy `@ai-sdk/react` 3.0.6 nests, which `useChat` runs.
//
// How the response is checked (one HTTP request, read twice):
//   * SDK path: `new DefaultChatTransport({api, body, fetch})` and `transport.sendMessages(...)`
//     build and send exactly the body useChat sends, and return the SDK's own stream of
//     validated UIMessageChunks (parseJsonEventStream + uiMessageChunkSchema; it errors on the
//     first chunk that fails the schema). The chunks are then replayed through the SDK's
//     `readUIMessageStream` twice: once with `terminateOnError: true` (what useChat shows: it
//     stops at the first error, including an `error` chunk) and once without, to collect every
//     processing error (e.g. text-delta without text-start, tool output for an unknown id).
//   * Raw path: the `fetch` given to the transport tees the response body, so the same bytes
//     are also checked independently of the SDK's parser: status, content-type,
//     `x-vercel-ai-ui-message-stream: v1`, every event terminated by "\n\n", only `data:` and
//     comment (`: keep-alive`) lines, each data payload valid under the SDK's exported
//     `uiMessageChunkSchema`, and `data: [DONE]` exactly once, last. A second, separate request
//     is deliberately not made: it would double the upstream calls the tests count.
//
// Output (stdout, one JSON object):
//   {sdk, ok, sdkOk, status, headers, requestHeaders, requestBody, chunks, message,
//    fullMessage, error, errorName, streamErrors, processingErrors, framing: {ok, problems},
//    rawEvents, rawEventTimesMs, rawBody, elapsedMs}
//   `requestHeaders` are the headers the SDK handed to fetch (lower-case names; ai 6 adds
//   `user-agent: ai-sdk/<version> runtime/...`, ai 7 none, and fetch then sends its default).
//   ok = HTTP 2xx && the SDK accepted every chunk && no processing error && framing ok.
//   `streamErrors` are the texts of `error` chunks as the SDK reported them (a server may send
//   them legitimately); `error` is the first thing the SDK rejected or threw (for a non-2xx
//   response: the SDK's error, whose message is the response body).
// Abort mode prints {sdk, aborted, completedBeforeAbort, status, headers, chunks, error}.
// Exit code 0 whenever a report was printed (also when the SDK rejected the stream); non-zero
// only for a bug in this harness (bad arguments, unexpected exception).

import { performance } from 'node:perf_hooks';

const SDK_PACKAGES = { 7: 'ai', 6: 'ai6', '6.0.6': 'ai606' };

function parseArgs(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const key = arg.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${arg}`);
    options[key] = value;
    i++;
  }
  return options;
}

async function readStdin() {
  let text = '';
  for await (const piece of process.stdin) text += piece;
  return text;
}

async function loadJob(argv) {
  const args = parseArgs(argv);
  let job = args;
  if (args.job !== undefined) {
    job = JSON.parse(args.job === '-' ? await readStdin() : args.job);
  } else {
    job = { ...args };
    for (const key of ['body', 'messages', 'headers']) {
      if (job[key] !== undefined) job[key] = JSON.parse(job[key]);
    }
    for (const key of ['abortAfterMs', 'timeoutMs']) {
      if (job[key] !== undefined) job[key] = Number(job[key]);
    }
  }
  job.sdk = String(job.sdk ?? '7');
  if (!SDK_PACKAGES[job.sdk]) throw new Error(`--sdk must be 7, 6 or 6.0.6, not ${job.sdk}`);
  if (!job.url) throw new Error('--url is required');
  job.body ??= {};
  job.headers ??= {};
  job.messages ??= [];
  job.timeoutMs ??= 30000;
  if (!Array.isArray(job.messages)) throw new Error('--messages must be a JSON array');
  return job;
}

function describeError(error) {
  if (error == null) return null;
  const message = String(error?.message ?? error);
  return message.length > 4000 ? `${message.slice(0, 4000)}…` : message;
}

function headersObject(headers) {
  const out = {};
  for (const [key, value] of headers.entries()) out[key] = value;
  return out;
}

function arrayStream(items) {
  return new ReadableStream({
    start(controller) {
      for (const item of items) controller.enqueue(structuredClone(item));
      controller.close();
    },
  });
}

/** Read the raw SSE bytes and check the framing independently of the SDK's parser. */
async function readRaw(stream, startedAt) {
  const events = [];
  const times = [];
  const decoder = new TextDecoder();
  let buffer = '';
  let text = '';
  let transportError = null;
  const reader = stream.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      const piece = decoder.decode(value, { stream: true });
      text += piece;
      buffer += piece;
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        events.push(buffer.slice(0, end));
        times.push(Math.round(performance.now() - startedAt));
        buffer = buffer.slice(end + 2);
      }
    }
    const tail = decoder.decode();
    text += tail;
    buffer += tail;
  } catch (error) {
    transportError = error;
  }
  return { events, times, text, leftover: buffer, transportError };
}

async function checkFraming(raw, response, chunkSchema) {
  const problems = [];
  if (!response.ok) return problems;
  const contentType = response.headers.get('content-type') ?? '';
  if (!contentType.startsWith('text/event-stream')) {
    problems.push(`content-type is ${JSON.stringify(contentType)}, not text/event-stream`);
  }
  const marker = response.headers.get('x-vercel-ai-ui-message-stream');
  if (marker !== 'v1') {
    problems.push(`x-vercel-ai-ui-message-stream is ${JSON.stringify(marker)}, not "v1"`);
  }
  if (raw.transportError) {
    problems.push(`the body broke off: ${describeError(raw.transportError)}`);
  }
  if (raw.leftover !== '') {
    problems.push(`unterminated trailing event (no "\\n\\n"): ${JSON.stringify(raw.leftover.slice(0, 200))}`);
  }
  let doneIndex = -1;
  for (const [index, event] of raw.events.entries()) {
    const lines = event.split('\n');
    const dataLines = [];
    for (const line of lines) {
      if (line.startsWith(':')) continue; // comment (keep-alive)
      if (line.startsWith('data: ')) dataLines.push(line.slice(6));
      else if (line.startsWith('data:')) dataLines.push(line.slice(5));
      else problems.push(`event ${index}: unexpected line ${JSON.stringify(line.slice(0, 200))}`);
    }
    if (dataLines.length === 0) continue;
    if (dataLines.length > 1) problems.push(`event ${index}: ${dataLines.length} data lines`);
    const data = dataLines.join('\n');
    if (doneIndex !== -1) {
      problems.push(`event ${index} after [DONE]: ${JSON.stringify(data.slice(0, 200))}`);
    }
    if (data === '[DONE]') {
      if (doneIndex !== -1) problems.push(`event ${index}: a second [DONE]`);
      doneIndex = index;
      continue;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      problems.push(`event ${index}: data is not JSON: ${JSON.stringify(data.slice(0, 200))}`);
      continue;
    }
    const result = await chunkSchema.validate(chunk);
    if (!result.success) {
      problems.push(
        `event ${index}: chunk fails uiMessageChunkSchema: ${data.slice(0, 300)} ` +
          `(${describeError(result.error).slice(0, 300)})`,
      );
    }
  }
  if (doneIndex === -1) problems.push('no "data: [DONE]" event');
  else if (raw.events.slice(doneIndex + 1).some(e => !e.startsWith(':'))) {
    problems.push('[DONE] is not the last event');
  }
  return problems;
}

/** Replay validated chunks through the SDK's readUIMessageStream. */
async function buildMessage(ai, chunks, terminateOnError) {
  const errors = [];
  let message = null;
  let thrown = null;
  try {
    for await (const snapshot of ai.readUIMessageStream({
      stream: arrayStream(chunks),
      terminateOnError,
      onError: error => errors.push(error),
    })) {
      message = snapshot;
    }
  } catch (error) {
    thrown = error;
  }
  return { message, errors, thrown };
}

function newUserMessage(ai, text) {
  return { id: ai.generateId(), role: 'user', parts: [{ type: 'text', text }] };
}

async function run(job) {
  const ai = await import(SDK_PACKAGES[job.sdk]);
  const chunkSchema = ai.asSchema(ai.uiMessageChunkSchema);
  const messages = [...job.messages];
  if (job.text !== undefined) messages.push(newUserMessage(ai, job.text));
  const chatId = job.chatId ?? `chat-${ai.generateId()}`;

  const startedAt = performance.now();
  let requestBody = null;
  let requestHeaders = null;
  let response = null;
  let rawPromise = null;
  const tapFetch = async (url, init) => {
    requestBody = JSON.parse(init.body);
    requestHeaders = headersObject(new Headers(init.headers));
    response = await globalThis.fetch(url, init);
    if (!response.body) return response;
    const [forSdk, forRaw] = response.body.tee();
    rawPromise = readRaw(forRaw, startedAt);
    return new Response(forSdk, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
  const transport = new ai.DefaultChatTransport({
    api: job.url,
    body: job.body,
    headers: job.headers,
    fetch: tapFetch,
  });

  const controller = new AbortController();
  let abortedByUs = false;
  let timedOut = false;
  const abortTimer =
    job.abortAfterMs !== undefined
      ? setTimeout(() => {
          abortedByUs = true;
          controller.abort();
        }, job.abortAfterMs)
      : null;
  const timeoutTimer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, job.timeoutMs);

  const chunks = [];
  let sdkError = null;
  let completed = false;
  try {
    const stream = await transport.sendMessages({
      chatId,
      messages,
      abortSignal: controller.signal,
      trigger: job.trigger ?? 'submit-message',
      messageId: job.messageId,
    });
    const reader = stream.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    completed = true;
  } catch (error) {
    sdkError = error;
  } finally {
    clearTimeout(abortTimer);
    clearTimeout(timeoutTimer);
  }
  const elapsedMs = Math.round(performance.now() - startedAt);

  if (job.abortAfterMs !== undefined) {
    return {
      sdk: job.sdk,
      aborted: abortedByUs && !completed,
      completedBeforeAbort: completed,
      status: response?.status ?? null,
      headers: response ? headersObject(response.headers) : {},
      chunks,
      error: abortedByUs ? null : describeError(sdkError),
      elapsedMs,
    };
  }

  const raw = rawPromise ? await rawPromise : null;
  const status = response?.status ?? null;
  const headers = response ? headersObject(response.headers) : {};
  const httpOk = Boolean(response?.ok);

  let framingProblems = [];
  if (raw && httpOk) framingProblems = await checkFraming(raw, response, chunkSchema);
  if (timedOut) framingProblems.push(`client timeout after ${job.timeoutMs} ms`);

  // What useChat shows: processing stops at the first error (an `error` chunk included).
  const shown = await buildMessage(ai, chunks, true);
  // Every processing error, to tell server `error` chunks from chunks the SDK cannot process.
  const full = await buildMessage(ai, chunks, false);
  const errorTexts = chunks.filter(c => c.type === 'error').map(c => c.errorText);
  const streamErrors = [];
  const processingErrors = [];
  const unmatched = [...errorTexts];
  for (const error of full.errors) {
    const at = unmatched.indexOf(error?.message);
    if (error?.constructor === Error && at !== -1) {
      unmatched.splice(at, 1);
      streamErrors.push(error.message);
    } else {
      processingErrors.push(`${error?.name ?? 'Error'}: ${describeError(error)}`);
    }
  }
  if (full.thrown) processingErrors.push(`${full.thrown.name}: ${describeError(full.thrown)}`);

  const sdkOk = httpOk && sdkError === null && processingErrors.length === 0;
  let error = null;
  let errorName = null;
  if (sdkError) {
    error = describeError(sdkError);
    errorName = sdkError?.name ?? null;
  } else if (processingErrors.length) {
    error = processingErrors[0];
    errorName = 'ProcessingError';
  } else if (framingProblems.length) {
    error = `framing: ${framingProblems[0]}`;
    errorName = 'FramingError';
  }
  return {
    sdk: job.sdk,
    ok: sdkOk && framingProblems.length === 0,
    sdkOk,
    status,
    headers,
    requestHeaders,
    requestBody,
    chunks,
    message: shown.message,
    fullMessage: full.message,
    error,
    errorName,
    statusCode: sdkError?.statusCode ?? null,
    streamErrors,
    processingErrors,
    framing: { ok: framingProblems.length === 0, problems: framingProblems },
    rawEvents: raw ? raw.events : [],
    rawEventTimesMs: raw ? raw.times : [],
    rawBody: raw && !httpOk ? raw.text : null,
    elapsedMs,
  };
}

let job;
try {
  job = await loadJob(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`client.mjs: ${error.message}\n`);
  process.exit(2);
}
try {
  const report = await run(job);
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
} catch (error) {
  process.stderr.write(`client.mjs: harness failure: ${error?.stack ?? error}\n`);
  process.exit(3);
}
