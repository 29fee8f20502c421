/**
 * What the batch API spec files share: uploading files, creating and polling batches, reading
 * result files, and checking the dialects' 401 bodies.
 */
import type { Dialect } from './fake-provider';
import { PRESETS, REQUEST_ID_PLACEHOLDER } from './presets';
import { fake, UUID, type Json } from './spec-support';

export type BatchDialect = 'dashscope' | 'openai' | 'zhipu';
export const BATCH_DIALECTS: BatchDialect[] = ['dashscope', 'openai', 'zhipu'];
export const AUTH = 'Bearer sk-batch-1';
export const TERMINAL = ['completed', 'failed', 'expired', 'cancelled'];
export const FILE_ID = /^file-batch-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const BATCH_ID = /^batch_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const REQ_ID = /^batch_req_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function line(customId: string, body: Record<string, unknown>): string {
  return JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body });
}

export async function upload(
  d: Dialect,
  content: string,
  opts: { auth?: string | null; purpose?: string | null; filename?: string; type?: string } = {},
): Promise<Response> {
  const form = new FormData();
  if (opts.purpose !== null) form.append('purpose', opts.purpose ?? 'batch');
  form.append('file', new Blob([content], { type: opts.type ?? 'application/jsonl' }), opts.filename ?? 'in.jsonl');
  const auth = opts.auth === undefined ? AUTH : opts.auth;
  return fetch(`${fake.baseUrl(d)}/files`, { method: 'POST', headers: auth === null ? {} : { authorization: auth }, body: form });
}

export async function uploadOk(d: Dialect, lines: string[]): Promise<string> {
  const res = await upload(d, lines.join('\n') + '\n');
  expect(res.status).toBe(200);
  return ((await res.json()) as Json).id as string;
}

export async function createBatch(d: Dialect, body: Record<string, unknown>, auth: string | null = AUTH): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (auth !== null) headers.authorization = auth;
  return fetch(`${fake.baseUrl(d)}/batches`, { method: 'POST', headers, body: JSON.stringify(body) });
}

export async function startBatch(d: Dialect, lines: string[]): Promise<Json> {
  const res = await createBatch(d, { input_file_id: await uploadOk(d, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
  expect(res.status).toBe(200);
  return (await res.json()) as Json;
}

export async function get(d: Dialect, path: string, auth: string | null = AUTH): Promise<Response> {
  return fetch(`${fake.baseUrl(d)}${path}`, { headers: auth === null ? {} : { authorization: auth } });
}

export async function batchNow(d: Dialect, id: string): Promise<Json> {
  const res = await get(d, `/batches/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Json;
}

export async function waitForBatch(d: Dialect, id: string, timeoutMs = 10_000): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await batchNow(d, id);
    if (TERMINAL.includes(b.status)) return b;
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${b.status as string}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The JSON lines of a file, each line ending with "\n". */
export async function download(d: Dialect, fileId: string): Promise<Json[]> {
  const res = await get(d, `/files/${fileId}/content`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/jsonl');
  const text = await res.text();
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((l) => JSON.parse(l) as Json);
}

export function expectAuthError(d: Dialect, body: Json): void {
  if (d === 'dashscope') {
    expect(body.request_id).toMatch(UUID);
    expect({ ...body, request_id: REQUEST_ID_PLACEHOLDER }).toEqual(PRESETS.dashscope.auth.body);
  } else {
    expect(body).toEqual(PRESETS[d].auth.body);
  }
}

/** A preset body with DashScope's fresh request_id put back to the placeholder. */
export function placeholder(body: Json): Json {
  return body.request_id === undefined ? body : { ...body, request_id: REQUEST_ID_PLACEHOLDER };
}
