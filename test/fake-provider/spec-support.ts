/**
 * What the fake provider's spec files share: one fake provider per file ({@link useFakeProvider}),
 * HTTP helpers, SSE parsing and token counts computed with js-tiktoken directly, not with the fake
 * provider's own helpers.
 */
import { getEncoding } from 'js-tiktoken';
import { startFakeProvider, type Dialect, type FakeProvider } from './fake-provider';

export const enc = getEncoding('o200k_base');
export const tokens = (s: string): number => enc.encode(s).length;
export const promptTokens = (messages: Array<{ content: string }>): number =>
  messages.reduce((n, m) => n + tokens(m.content) + 4, 3);

export const DIALECTS: Dialect[] = ['deepseek', 'zhipu', 'dashscope', 'openai'];
export const MODEL: Record<Dialect, string> = {
  deepseek: 'deepseek-flash',
  zhipu: 'glm-5.3-flash',
  dashscope: 'qwen-flash',
  openai: 'gpt-6-luna',
};
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface Msg {
  role: string;
  content: string;
}

/** Any JSON answer: the tests look into it freely. */
export type Json = Record<string, any>;

/** The spec file's fake provider, started by {@link useFakeProvider}. */
export let fake: FakeProvider;

/** Starts the file's fake provider before its tests, resets it before each one and closes it after. */
export function useFakeProvider(): void {
  beforeAll(async () => {
    fake = await startFakeProvider();
  });
  afterAll(async () => {
    await fake.close();
  });
  beforeEach(() => fake.reset());
}

export function chatUrl(d: Dialect): string {
  return `${fake.baseUrl(d)}/chat/completions`;
}

export async function post(
  d: Dialect,
  body: Record<string, unknown>,
  opts: { auth?: string | null; signal?: AbortSignal; url?: string } = {},
): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const auth = opts.auth === undefined ? 'Bearer sk-test-1' : opts.auth;
  if (auth !== null) headers.authorization = auth;
  return fetch(opts.url ?? chatUrl(d), { method: 'POST', headers, body: JSON.stringify(body), signal: opts.signal });
}

export async function chat(d: Dialect, messages: Msg[], extra: Record<string, unknown> = {}, auth?: string): Promise<Json> {
  const res = await post(d, { model: MODEL[d], messages, ...extra }, { auth });
  expect(res.status).toBe(200);
  return (await res.json()) as Json;
}

export function cachedTokens(d: Dialect, usage: Json): number {
  return d === 'deepseek' ? usage.prompt_cache_hit_tokens : usage.prompt_tokens_details.cached_tokens;
}

/** The `data:` payloads of an SSE text, in order ([DONE] included as the string). */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length));
}

export function parseChunks(text: string): Json[] {
  return sseData(text)
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Json);
}

/** Deterministic English-and-Chinese filler of roughly `approxTokens` tokens. */
export function filler(seed: number, approxTokens: number): string {
  const words = [
    'the', 'student', 'argues', 'that', 'climate', 'policy', 'must', 'balance', 'growth', 'and', 'equity',
    '作文', '结构', '清晰', '论点', '明确', 'rubric', 'criterion', 'evidence', 'paragraph', 'coherence',
  ];
  let x = seed;
  const out: string[] = [];
  while (tokens(out.join(' ')) < approxTokens) {
    for (let i = 0; i < 10; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      out.push(words[x % words.length]);
    }
  }
  return out.join(' ');
}
