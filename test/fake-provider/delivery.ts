/**
 * Sending an answer over HTTP: a reply or a JSON completion after the latency (with DeepSeek's
 * blank lines first when scripted), a server-sent-events stream (keep-alive comments, chunk delays,
 * Zhipu's usage in the finish chunk, a stream cut mid-way), a hang, or a reset socket.
 */
import type * as http from 'node:http';
import type { Answer, Call, Completions } from './completions';
import { gone, sendJson, type Sleeper } from './http';

/** Sends answers of the completion logic; every wait ends early when the server closes. */
export class Delivery {
  constructor(
    private readonly sleeper: Sleeper,
    private readonly completions: Completions,
  ) {}

  /** The default latency, as the completion logic has it now. */
  private get latencyMs(): number {
    return this.completions.latencyMs;
  }

  private sleep(ms: number): Promise<boolean> {
    return this.sleeper.sleep(ms);
  }

  async deliver(req: http.IncomingMessage, res: http.ServerResponse, call: Call, a: Answer): Promise<void> {
    switch (a.kind) {
      case 'reply':
        return this.sendAfter(res, a.latencyMs, a.status, a.body, a.headers);
      case 'completion':
        return call.streaming ? this.stream(req, res, call, a) : this.sendCompletion(res, a);
      case 'hang':
        return; // the socket stays open until the client gives up or close() destroys it
      case 'reset':
        req.socket.destroy();
        return;
    }
  }

  /** Answers a 200 completion as JSON, after the latency (or with blank lines first, like DeepSeek). */
  private async sendCompletion(res: http.ServerResponse, a: Extract<Answer, { kind: 'completion' }>): Promise<void> {
    const c = a.completion;
    const payload = JSON.stringify(a.body);
    const delay = c.latencyMs ?? this.latencyMs;
    const blank = Math.floor(c.blankLinesBefore ?? 0);
    if (blank <= 0) return this.sendAfter(res, delay, 200, payload);

    // DeepSeek under load: headers at once, then "\n" lines while it works, then the body.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    const gap = Math.max(5, Math.floor(delay / (blank + 1)));
    for (let i = 0; i < blank; i++) {
      if (!(await this.sleep(gap)) || gone(res)) return;
      res.write('\n');
    }
    if (!(await this.sleep(Math.max(0, delay - gap * blank))) || gone(res)) return;
    res.end(payload);
  }

  private async stream(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    call: Call,
    a: Extract<Answer, { kind: 'completion' }>,
  ): Promise<void> {
    const { dialect } = call;
    const { completion: c, usage, id, created } = a;
    if (!(await this.sleep(c.latencyMs ?? this.latencyMs)) || gone(res)) return;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    const delay = c.chunkDelayMs ?? 0;
    const chunk = (choices: unknown[], extra?: Record<string, unknown>): string =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: call.model, choices, ...extra })}\n\n`;
    let flushed: Promise<void> = Promise.resolve(); // the last write, handed to the socket
    const send = async (data: string): Promise<boolean> => {
      if (gone(res)) return false;
      const bytes = Buffer.from(data, 'utf8');
      // (splitCharacters: the first byte of the first multi-byte character ends the first write)
      const cut = c.splitCharacters ? bytes.findIndex((b) => b >= 0xc0) + 1 : 0;
      if (cut > 0) {
        await new Promise<void>((resolve) => res.write(bytes.subarray(0, cut), () => resolve()));
        if (!(await this.sleep(20)) || gone(res)) return false;
        flushed = new Promise<void>((resolve) => res.write(bytes.subarray(cut), () => resolve()));
        return delay > 0 ? (await this.sleep(delay)) && !gone(res) : true;
      }
      flushed = new Promise<void>((resolve) => res.write(data, () => resolve()));
      return delay > 0 ? (await this.sleep(delay)) && !gone(res) : true;
    };

    for (let i = 0; i < (c.keepAliveComments ?? 0); i++) if (!(await send(': keep-alive\n\n'))) return;

    const zhipuUsage = dialect === 'zhipu' ? { usage } : undefined;
    if (c.finishReason === 'sensitive' && c.content === '') {
      // Zhipu's content filter: the first chunk already stops.
      if (!(await send(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: 'sensitive' }], zhipuUsage)))) return;
    } else {
      if (!(await send(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }])))) return;
      const pieces = splitContent(c.content, Math.max(1, Math.floor(c.chunks ?? 4)));
      const cut = c.cutAfterChunks === undefined ? Infinity : Math.floor(c.cutAfterChunks);
      for (let i = 0; i < pieces.length && i < cut; i++) {
        // (vLLM's continuous_usage_stats: each chunk says what was produced so far)
        const soFar = c.usageEveryChunk ? { usage: { ...usage, completion_tokens: Math.round((Number(usage.completion_tokens) * (i + 1)) / pieces.length) } } : undefined;
        if (!(await send(chunk([{ index: 0, delta: { content: pieces[i] }, finish_reason: null }], soFar)))) return;
      }
      if (cut <= pieces.length) {
        // Let what was written reach the client, then drop the connection mid-stream.
        await Promise.race([flushed, this.sleep(1000)]);
        req.socket.destroy();
        return;
      }
      if (!(await send(chunk([{ index: 0, delta: {}, finish_reason: c.finishReason }], zhipuUsage)))) return;
    }
    if (call.includeUsage && dialect !== 'zhipu') if (!(await send(chunk([], { usage })))) return;
    if (!gone(res)) res.end('data: [DONE]\n\n');
  }

  /** Waits `delay` ms, then sends status and body (a string verbatim, anything else as JSON). */
  private async sendAfter(
    res: http.ServerResponse,
    delay: number,
    status: number,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<void> {
    if (!(await this.sleep(delay)) || gone(res)) return;
    sendJson(res, status, body, headers);
  }
}

/** Splits text into about `n` pieces without breaking characters. */
function splitContent(text: string, n: number): string[] {
  const chars = Array.from(text);
  if (chars.length === 0) return [];
  const size = Math.ceil(chars.length / Math.min(n, chars.length));
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

