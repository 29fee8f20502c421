import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../config/app-config';
import { Catalog } from './catalog';
import { ProviderClient } from './provider-client';
import { ADAPTERS } from './providers';
import { ProviderError } from './types';

/**
 * How a stream cut by the total timeout is told apart (real HTTP on loopback): one whose tokens
 * still came is `total_timeout` (no failure of the model: the circuit breaker leaves it out), one
 * that had gone quiet stalled (`timeout`, a failure like any).
 */
describe('a stream cut by the total timeout', () => {
  let server: http.Server;
  let url: string;
  /** tokens every `everyMs`, for `forMs`, then silence (or, with `keepAlive`, ": keep-alive" comments) */
  let cadence = { everyMs: 100, forMs: 10_000, keepAlive: false };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const started = Date.now();
      const timer = setInterval(() => {
        if (Date.now() - started > cadence.forMs) {
          if (cadence.keepAlive) res.write(': keep-alive\n\n');
          return; // gone quiet, the socket open
        }
        res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: '字' }, finish_reason: null }] })}\n\n`);
      }, cadence.everyMs);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const cutBy = async (totalTimeoutMs: number, readerPauseMs = 0): Promise<ProviderError> => {
    const llm = { ...loadConfig({ INKSTONE_ADMIN_TOKEN: 'operator-token-0123456789abcdef' }).llm, totalTimeoutMs, firstByteTimeoutMs: 60_000 };
    const client = new ProviderClient(llm);
    const model = Catalog.load().models.get('deepseek:deepseek-flash')!;
    try {
      const events = client.stream({ name: 'deepseek', apiKey: 'sk-test', baseUrl: url }, ADAPTERS.deepseek, model, { messages: [{ role: 'user', content: '写' }], maxTokens: 1000, stream: true });
      let first = true;
      for await (const ev of events) {
        void ev;
        // A slow reader (a chat client that reads slowly): it holds its first event past the limit.
        if (first && readerPauseMs > 0) await new Promise((r) => setTimeout(r, readerPauseMs));
        first = false;
      }
      throw new Error('the stream ended');
    } catch (err) {
      return err as ProviderError;
    } finally {
      await client.close();
    }
  };

  it('is total_timeout while its tokens still come', async () => {
    cadence = { everyMs: 100, forMs: 10_000, keepAlive: false };
    expect(await cutBy(1_200)).toMatchObject({ errorClass: 'retryable', reason: 'total_timeout' });
  });

  it('is a timeout (a stall) when it had gone quiet before the limit', async () => {
    // Tokens for 200 ms, then nothing: cut at 1.6 s, its last chunk more than a quarter of that (400 ms) before.
    cadence = { everyMs: 50, forMs: 200, keepAlive: false };
    expect(await cutBy(1_600)).toMatchObject({ errorClass: 'retryable', reason: 'timeout' });
  });

  it('is total_timeout when the reader held the stream past the limit, the provider still sending: its slowness is no failure of the model', async () => {
    cadence = { everyMs: 50, forMs: 10_000, keepAlive: false };
    expect(await cutBy(1_200, 1_500)).toMatchObject({ errorClass: 'retryable', reason: 'total_timeout' });
  });

  it('is a timeout when only keep-alive comments still came: they are no sign of the model answering', async () => {
    cadence = { everyMs: 50, forMs: 200, keepAlive: true };
    expect(await cutBy(1_600)).toMatchObject({ errorClass: 'retryable', reason: 'timeout' });
  });
});
