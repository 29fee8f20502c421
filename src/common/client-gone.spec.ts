import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyReply } from 'fastify';
import { clientGoneSignal, lazyClientGoneSignal } from './client-gone';

/** A real server on loopback: the request's response is handed to `onRequest`, with a way to make the client leave. */
async function withExchange(onRequest: (res: http.ServerResponse, abortClient: () => void) => Promise<void>): Promise<void> {
  let done: Promise<void> | undefined;
  let client: http.ClientRequest | undefined;
  const server = http.createServer((_req, res) => {
    done = onRequest(res, () => client!.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    client = http.request({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', method: 'POST' });
    client.on('error', () => undefined);
    client.on('response', (r) => r.resume());
    client.write('x');
    await waitUntil(() => done !== undefined);
    await done;
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
const reply = (res: http.ServerResponse) => ({ raw: res }) as unknown as FastifyReply;
async function waitUntil(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!ok()) throw new Error('timed out');
}

describe('the client-gone signal', () => {
  it('aborts when the client closes the connection before the answer', () =>
    withExchange(async (res, abortClient) => {
      const signal = clientGoneSignal(reply(res));
      expect(signal.aborted).toBe(false);
      abortClient();
      await waitUntil(() => signal.aborted);
      expect((signal.reason as Error).message).toMatch(/closed the connection/);
    }));

  it('does not abort once the answer has gone out', () =>
    withExchange(async (res) => {
      const signal = clientGoneSignal(reply(res));
      await new Promise<void>((resolve) => res.end('ok', resolve));
      await waitUntil(() => res.closed);
      expect(signal.aborted).toBe(false);
      expect(clientGoneSignal(reply(res)).aborted).toBe(false); // made after the answer: not aborted either
    }));

  it('made lazily: no signal and no listener until asked for; asked for after the client left, it is aborted already', () =>
    withExchange(async (res, abortClient) => {
      const listeners = res.listenerCount('close');
      const lazy = lazyClientGoneSignal(reply(res));
      expect(res.listenerCount('close')).toBe(listeners);
      abortClient();
      await waitUntil(() => res.closed);
      const signal = lazy();
      expect(signal.aborted).toBe(true);
      expect(lazy()).toBe(signal); // made once
    }));

  it('made lazily before the client leaves: aborts when it does', () =>
    withExchange(async (res, abortClient) => {
      const lazy = lazyClientGoneSignal(reply(res));
      const signal = lazy();
      expect(signal.aborted).toBe(false);
      abortClient();
      await waitUntil(() => signal.aborted);
    }));
});
