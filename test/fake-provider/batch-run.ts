/**
 * A batch's state and its run: every line of the input file, in order, through the same completion
 * logic as a real-time request (no latency, no streaming), into the output and error files; and
 * the batch as `GET /batches/:id` shows it at a given time (it ends once its lines are done and
 * the batch latency has passed, or with its scripted failure).
 */
import { randomUUID } from 'node:crypto';
import { makeCall, toChatBody, type Call, type Completions } from './completions';
import { BASE_PATHS, failureBody } from './dialects';
import { isRecord } from './http';
import { materializePreset, PRESETS, type Dialect } from './presets';
import type { BatchFailure, BatchObject, FileObject, RecordedRequest } from './types';

/** A batch as the fake provider keeps it (see {@link batchObject} for what the API shows). */
export interface BatchState {
  dialect: Dialect;
  id: string;
  endpoint: string;
  inputFileId: string;
  completionWindow: string;
  metadata: Record<string, string> | null;
  /** Headers of the `POST /batches` request (recorded with each line; their Authorization keys the prefix cache). */
  headers: Record<string, string | string[] | undefined>;
  auth: string;
  /** The input file's lines, blank ones left out. */
  lines: string[];
  createdMs: number;
  /** The batch latency when it was created. */
  latencyMs: number;
  startedMs?: number;
  /** When every line had been processed. */
  doneMs?: number;
  completed: number;
  failed: number;
  outputFileId: string | null;
  errorFileId: string | null;
  /** `POST /batches/:id/cancel` was answered at this time: the lines not run by then are not run. */
  cancelledMs?: number;
  /** An expired batch that ran this many lines before its window ran out (the others are in its error file as `batch_expired`). */
  runLines?: number;
  /** A scripted failure (or the processing itself failing): the batch ends with it, not 'completed'. */
  failure?: { outcome: BatchFailure; code: string; message: string; atMs: number };
}

/** What running a batch needs from the rest of the fake provider. */
export interface BatchRunContext {
  readonly completions: Completions;
  /** Records a line as a chat request. */
  record(r: RecordedRequest): void;
  /** Counts a line answered with 200 as billed (a provider bills a batch's completed lines, even if the batch is cancelled later). */
  bill(body: { messages?: unknown }): void;
  /** Whether the batch is still there (reset() drops it) and the server still running. */
  live(b: BatchState): boolean;
  /** Stores an output or error file of the batch. */
  addFile(dialect: Dialect, idPrefix: string, filename: string, purpose: FileObject['purpose'], content: Buffer): FileObject;
}

/** Runs every line, in order, through the completion logic; then writes the output and error files. */
export async function runBatch(ctx: BatchRunContext, b: BatchState): Promise<void> {
  if (!ctx.live(b)) return;
  b.startedMs = Date.now();
  const output: string[] = [];
  const errors: string[] = [];
  const chatPath = `${BASE_PATHS[b.dialect]}/chat/completions`;
  let yielded = Date.now();
  for (const line of b.lines) {
    if (Date.now() - yielded > 10) {
      // Token counting is synchronous: let real-time requests in between lines.
      await new Promise<void>((resolve) => setImmediate(resolve));
      yielded = Date.now();
    }
    if (!ctx.live(b)) return;
    if (b.cancelledMs !== undefined) break;
    const parsed = parseBatchLine(line, b.endpoint);
    if (b.runLines !== undefined && b.completed + b.failed >= b.runLines) {
      // Its window ran out: the line is not run, and says so in the error file.
      errors.push(JSON.stringify({ id: `batch_req_${randomUUID()}`, custom_id: parsed.customId, response: null, error: { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' } }));
      continue;
    }
    if ('error' in parsed) {
      errors.push(
        JSON.stringify({
          id: `batch_req_${randomUUID()}`,
          custom_id: parsed.customId,
          response: null,
          error: { code: 'invalid_request', message: parsed.error },
        }),
      );
      b.failed++;
      continue;
    }
    const { body, valid } = toChatBody(parsed.body, line);
    ctx.record({ dialect: b.dialect, path: chatPath, model: body.model, body, headers: { ...b.headers }, at: Date.now(), batchId: b.id });
    const call = makeCall(b.dialect, body, valid, b.auth);
    call.streaming = false; // a batch line is answered as a whole completion
    call.includeUsage = false;
    const result = await respond(ctx, call);
    if (!ctx.live(b)) return;
    const ok = result.status >= 200 && result.status < 300;
    const requestId = isRecord(result.body) && typeof result.body.request_id === 'string' ? result.body.request_id : randomUUID();
    (ok ? output : errors).push(
      JSON.stringify({
        id: `batch_req_${randomUUID()}`,
        custom_id: parsed.customId,
        response: { status_code: result.status, request_id: requestId, body: result.body },
        error: null,
      }),
    );
    if (ok) {
      b.completed++;
      ctx.bill(body);
    } else b.failed++;
  }
  b.outputFileId = ctx.addFile(b.dialect, 'file-batch_output-', `${b.id}_output.jsonl`, 'batch_output', jsonl(output)).id;
  if (errors.length > 0) {
    b.errorFileId = ctx.addFile(b.dialect, 'file-batch_error-', `${b.id}_error.jsonl`, 'batch_output', jsonl(errors)).id;
  }
  b.doneMs = Date.now();
}

/** A call answered as a status and a body, as a non-streaming HTTP request would get them (no latency). */
async function respond(ctx: BatchRunContext, call: Call): Promise<{ status: number; body: unknown }> {
  try {
    const a = await ctx.completions.answer(call, 'batch');
    if (a.kind === 'completion') return { status: 200, body: a.body };
    if (a.kind === 'reply') return { status: a.status, body: a.body };
    return { status: 500, body: materializePreset(PRESETS[call.dialect].server_error).body }; // not for batches
  } catch (err) {
    return { status: 500, body: failureBody(err) };
  }
}

/** The batch as the API shows it at `now`: it ends once its lines are done and its latency has passed. */
export function batchObject(b: BatchState, now: number): BatchObject {
  const sec = (ms: number): number => Math.floor(ms / 1000);
  const readyMs = b.createdMs + b.latencyMs;
  const out: BatchObject = {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint,
    errors: null,
    input_file_id: b.inputFileId,
    completion_window: b.completionWindow,
    status: b.startedMs === undefined ? 'validating' : 'in_progress',
    output_file_id: null,
    error_file_id: null,
    created_at: sec(b.createdMs),
    in_progress_at: b.startedMs === undefined ? null : sec(b.startedMs),
    completed_at: null,
    failed_at: null,
    expired_at: null,
    cancelled_at: null,
    request_counts: { total: b.lines.length, completed: b.completed, failed: b.failed },
    metadata: b.metadata === null ? null : { ...b.metadata },
  };
  if (b.cancelledMs !== undefined) {
    // Cancelled before it ended: what was done is in its files (and billed), the rest is not run.
    out.status = 'cancelled';
    out.cancelled_at = sec(b.cancelledMs);
    out.output_file_id = b.outputFileId;
    out.error_file_id = b.errorFileId;
  } else if (b.failure) {
    const endMs = Math.max(readyMs, b.failure.atMs);
    // (An expired batch that ran some lines ends once they are written, with its files.)
    if (now >= endMs && (b.runLines === undefined || b.doneMs !== undefined)) {
      out.status = b.failure.outcome;
      out.errors = { object: 'list', data: [{ code: b.failure.code, message: b.failure.message, line: null, param: null }] };
      if (b.runLines !== undefined) {
        out.output_file_id = b.outputFileId;
        out.error_file_id = b.errorFileId;
      }
      if (b.failure.outcome === 'failed') out.failed_at = sec(endMs);
      else out.expired_at = sec(endMs);
    }
  } else if (b.doneMs !== undefined && now >= readyMs) {
    out.status = 'completed';
    out.completed_at = sec(Math.max(b.doneMs, readyMs));
    out.output_file_id = b.outputFileId;
    out.error_file_id = b.errorFileId;
  }
  return out;
}

/**
 * One line of a batch input file: `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`.
 * Not JSON, no custom_id, no body object, or another method or url: an error for the error file.
 */
function parseBatchLine(line: string, endpoint: string): { customId: string; body: unknown } | { customId: string | null; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { customId: null, error: 'The line is not valid JSON.' };
  }
  if (!isRecord(raw)) return { customId: null, error: 'The line is not a JSON object.' };
  const customId = typeof raw.custom_id === 'string' && raw.custom_id !== '' ? raw.custom_id : null;
  if (customId === null) return { customId: null, error: "The line has no 'custom_id' string." };
  if (raw.method !== undefined && raw.method !== 'POST') return { customId, error: "The line's 'method' must be POST." };
  if (raw.url !== undefined && raw.url !== endpoint) {
    return { customId, error: `The line's 'url' must be the batch's endpoint, ${endpoint}.` };
  }
  if (!isRecord(raw.body)) return { customId, error: "The line has no 'body' object." };
  return { customId, body: raw.body };
}

/** Lines as a JSONL file: each line ends with "\n". */
function jsonl(lines: readonly string[]): Buffer {
  return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
}
