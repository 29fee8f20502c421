import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AlertsRepository } from '../src/billing/alerts.repository';
import { TenantSecretsService } from '../src/billing/tenant-secrets.service';
import { EVENT_ID_HEADER, WebhookDispatcher } from '../src/billing/webhook-dispatcher';
import { HostResolver, LookupFn } from '../src/common/outbound-webhook';
import { verifySignature } from '../src/common/signature';
import type { WebhookConfig } from '../src/config/app-config';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';
import { waitFor } from './support/wait';

/**
 * Outgoing webhooks against real receivers on loopback and a real PostgreSQL. DNS is the one part
 * fed by the test (HostResolver.lookup), so a host name can "resolve" to any address.
 */
describe('outbound webhooks: only to public addresses, pinned, bounded, once', () => {
  let t: TestApp;
  let f: Factory;
  let resolver: HostResolver;
  let systemLookup: LookupFn;
  let secrets: TenantSecretsService;
  const closers: Array<() => void> = [];
  const lookups: string[] = [];

  beforeAll(async () => {
    t = await createTestApp();
    f = new Factory(t.app);
    // This file drives deliveries itself: the app's own background loop is stopped.
    await t.app.get(WebhookDispatcher).onApplicationShutdown();
    resolver = t.app.get(HostResolver);
    systemLookup = resolver.lookup;
    secrets = t.app.get(TenantSecretsService);
  });
  afterEach(() => {
    resolver.lookup = systemLookup;
    lookups.length = 0;
    while (closers.length) closers.pop()!();
  });
  afterAll(() => t.close());

  /** DNS as the test wants it: every name resolves to these addresses. */
  const resolveTo = (...addresses: string[]) => {
    resolver.lookup = async (host) => {
      lookups.push(host);
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };
  };

  const dispatcher = (webhooks: Partial<WebhookConfig> = {}, ds: DataSource = t.dataSource) =>
    new WebhookDispatcher(new AlertsRepository(ds), { ...t.config, webhooks: { allowPrivate: true, timeoutMs: 5_000, concurrency: 8, ...webhooks } }, resolver, secrets);

  /** A queued alert webhook, as AlertsService queues one, to the tenant's alert URL (set here as stored, whatever it is). */
  async function queue(tenantId: string, url: string): Promise<{ id: string; eventId: string }> {
    // (and a secret, unless the test set its own: every event is signed)
    await t.dataSource.query(`UPDATE tenants SET alert_webhook_url = $2, alert_webhook_secret_enc = coalesce(alert_webhook_secret_enc, $3) WHERE id = $1`, [
      tenantId,
      url,
      secrets.seal('alert', tenantId, 'alert-secret-of-the-queue-helper'),
    ]);
    const id = randomUUID();
    const eventId = `alert_${id}`;
    const body = JSON.stringify({ id: eventId, type: 'budget.threshold_reached', data: { tenantId, period: '2026-12', threshold: 0.8, utilization: 0.81 } });
    await t.dataSource.query(`INSERT INTO outbound_webhooks (tenant_id, id, event_id, url, body, status) VALUES ($1, $2, $3, $4, $5, 'pending')`, [
      tenantId,
      id,
      eventId,
      url,
      body,
    ]);
    return { id, eventId };
  }

  const row = async (id: string) =>
    (await t.dataSource.query(`SELECT status, attempts, last_error, claim_token FROM outbound_webhooks WHERE id = $1`, [id]))[0] as {
      status: string;
      attempts: number;
      last_error: string | null;
      claim_token: string | null;
    };

  interface Hit {
    headers: http.IncomingHttpHeaders;
    body: string;
    at: number;
  }

  /** An HTTP receiver on loopback; `answer` decides the response (default 200 "ok"). */
  async function receiver(answer?: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
    const hits: Hit[] = [];
    let connections = 0;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        hits.push({ headers: req.headers, body, at: Date.now() });
        if (answer) answer(req, res);
        else res.end('ok');
      });
    });
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const port = (server.address() as net.AddressInfo).port;
    return { port, url: `http://127.0.0.1:${port}/hook`, hits, connections: () => connections };
  }

  /** A TCP listener that only counts connections: proof that nothing connected. */
  async function listener() {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => server.close());
    return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
  }

  describe('when the URL is set (PUT /v1/budget)', () => {
    let tenant: TestTenant;
    beforeEach(async () => (tenant = await f.newTenant()));
    const put = (alertWebhookUrl: string) =>
      t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '100.00', alertWebhookUrl, alertWebhookSecret: 'alert-secret-0123456789' });

    it.each([
      ['', 'alertWebhookUrl must be an absolute URL such as https://hooks.example.com/inkstone'],
      ['http://hooks.example.com/x', 'alertWebhookUrl must use https://'],
      ['https://127.0.0.1/x', 'alertWebhookUrl must point to a public address, not 127.0.0.1 (loopback)'],
      ['https://2130706433/x', 'alertWebhookUrl must point to a public address, not 127.0.0.1 (loopback)'],
      ['https://0x7f.1/x', 'alertWebhookUrl must point to a public address, not 127.0.0.1 (loopback)'],
      ['https://[::ffff:7f00:1]/x', 'alertWebhookUrl must point to a public address, not ::ffff:127.0.0.1 (IPv4-mapped form of 127.0.0.1, loopback)'],
      ['https://169.254.169.254/latest/meta-data/', 'alertWebhookUrl must point to a public address, not 169.254.169.254 (cloud metadata)'],
      ['https://metadata.google.internal/computeMetadata/v1/', 'alertWebhookUrl must not point to a cloud metadata service (metadata.google.internal)'],
      ['https://intranet/x', 'alertWebhookUrl must name a fully qualified public host (got "intranet")'],
    ])('refuses %s with 400 and a field message', async (url, message) => {
      const res = await put(url).expect(400);
      expect(res.body.error.details).toEqual([{ field: 'alertWebhookUrl', message }]);
      expect(lookups).toEqual([]); // refused by its form, without DNS
    });

    it('refuses a host name that resolves to a private address now, and accepts a public or not yet resolvable one', async () => {
      resolveTo('93.184.215.14', '10.0.0.5');
      const res = await put('https://hooks.example.com/inkstone').expect(400);
      expect(res.body.error.details).toEqual([
        { field: 'alertWebhookUrl', message: 'alertWebhookUrl must point to a public address: hooks.example.com resolved to 10.0.0.5 (private), which is not a public address' },
      ]);
      resolveTo('93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c');
      expect((await put('https://hooks.example.com/inkstone').expect(200)).body.alertWebhookUrl).toBe('https://hooks.example.com/inkstone');
      resolver.lookup = async () => {
        throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      };
      await put('https://new-hooks.example.com/inkstone').expect(200); // checked again when sending
    });

    it('needs a secret with a URL (every event is signed): given with it, or kept from before', async () => {
      resolveTo('93.184.215.14');
      const bare = { monthlyCap: '100.00', alertWebhookUrl: 'https://hooks.example.com/inkstone' };
      const refused = await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send(bare).expect(400);
      expect(refused.body.error.details).toEqual([
        { field: 'alertWebhookSecret', message: 'alertWebhookSecret is needed with an alertWebhookUrl (every event is signed with it)' },
      ]);
      expect((await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.alertWebhookUrl).toBeNull();
      await put('https://hooks.example.com/inkstone').expect(200);
      // Kept: another URL, or the cap alone, without the secret again.
      await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ ...bare, alertWebhookUrl: 'https://hooks.example.com/v2' }).expect(200);
      await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '200.00' }).expect(200);
      // No URL, no secret needed.
      await t.http.put('/v1/budget').set(bearer((await f.newTenant()).adminKey)).send({ monthlyCap: '50.00', alertWebhookUrl: null }).expect(200);
      // A URL stored before the rule, without a secret, blocks nothing else (the console sends the URL it shows with every save).
      const older = await f.newTenant();
      await t.dataSource.query(`UPDATE tenants SET alert_webhook_url = 'https://hooks.example.com/old' WHERE id = $1`, [older.tenantId]);
      await t.http.put('/v1/budget').set(bearer(older.adminKey)).send({ monthlyCap: '10.00' }).expect(200);
      await t.http.put('/v1/budget').set(bearer(older.adminKey)).send({ monthlyCap: '10.00', alertWebhookUrl: 'https://hooks.example.com/old' }).expect(200);
      expect((await t.http.put('/v1/budget').set(bearer(older.adminKey)).send({ monthlyCap: '10.00', alertWebhookUrl: 'https://hooks.example.com/new' }).expect(400)).body.error.details[0].field).toBe(
        'alertWebhookSecret',
      );
    });
  });

  describe('when sending', () => {
    it('refuses a host name that resolves to loopback at send time, without connecting', async () => {
      const tenant = await f.newTenant();
      const target = await listener();
      resolveTo('93.184.215.14', '127.0.0.1'); // one public address is not enough: every one is checked
      const w = await queue(tenant.tenantId, `https://hooks.example.com:${target.port}/hook`);
      expect(await dispatcher({ allowPrivate: false }).deliverDue()).toBe(0);
      expect(lookups).toEqual(['hooks.example.com']);
      expect(await row(w.id)).toEqual({
        status: 'failed', // a refused destination is not retried
        attempts: 1,
        last_error: 'hooks.example.com resolved to 127.0.0.1 (loopback), which is not a public address',
        claim_token: null,
      });
      expect(target.connections()).toBe(0);
    });

    it.each([
      ['::ffff:127.0.0.1', '::ffff:127.0.0.1 (IPv4-mapped form of 127.0.0.1, loopback)'],
      ['fd00:ec2::254', 'fd00:ec2::254 (AWS metadata)'],
      ['100.64.0.9', '100.64.0.9 (CGNAT shared address space)'],
    ])('refuses a name resolving to %s', async (address, what) => {
      const tenant = await f.newTenant();
      resolveTo(address);
      const w = await queue(tenant.tenantId, 'https://hooks.example.com/hook');
      expect(await dispatcher({ allowPrivate: false }).deliverDue()).toBe(0);
      expect((await row(w.id)).last_error).toBe(`hooks.example.com resolved to ${what}, which is not a public address`);
    });

    it('refuses a stored private or http URL (set while private webhooks were allowed) without connecting', async () => {
      const tenant = await f.newTenant();
      const target = await listener();
      const literal = await queue(tenant.tenantId, `https://127.0.0.1:${target.port}/hook`);
      const plain = await queue((await f.newTenant()).tenantId, 'http://hooks.example.com/hook');
      expect(await dispatcher({ allowPrivate: false }).deliverDue()).toBe(0);
      expect(await row(literal.id)).toMatchObject({ status: 'failed', last_error: 'the URL must point to a public address, not 127.0.0.1 (loopback)' });
      expect(await row(plain.id)).toMatchObject({ status: 'failed', last_error: 'the URL must use https://' });
      expect(target.connections()).toBe(0);
      expect(lookups).toEqual([]);
    });

    it('connects to the vetted address only, keeping the host name for the Host header and TLS SNI', async () => {
      const tenant = await f.newTenant();
      const plain = await receiver();
      resolveTo('127.0.0.1');
      const w = await queue(tenant.tenantId, `http://hooks.test:${plain.port}/hook?x=1`);
      expect(await dispatcher().deliverDue()).toBe(1);
      expect(plain.hits).toHaveLength(1);
      expect(plain.hits[0].headers.host).toBe(`hooks.test:${plain.port}`);
      expect((await row(w.id)).status).toBe('delivered');

      // TLS: the handshake names the host (SNI), though the socket went to the vetted address.
      const names: string[] = [];
      const secure = tls.createServer({ SNICallback: (name, cb) => (names.push(name), cb(new Error('no certificate here'), undefined)) });
      await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
      closers.push(() => secure.close());
      const s = await queue((await f.newTenant()).tenantId, `https://hooks.test:${(secure.address() as net.AddressInfo).port}/hook`);
      expect(await dispatcher().deliverDue()).toBe(0);
      expect(names).toEqual(['hooks.test']);
      expect(await row(s.id)).toMatchObject({ status: 'pending', attempts: 1 });
      expect(lookups).toEqual(['hooks.test', 'hooks.test']);
    });

    it('does not follow a redirect: a 3xx is a failed delivery', async () => {
      const tenant = await f.newTenant();
      const elsewhere = await receiver();
      const redirecting = await receiver((_req, res) => {
        res.writeHead(302, { location: elsewhere.url });
        res.end();
      });
      const w = await queue(tenant.tenantId, redirecting.url);
      expect(await dispatcher().deliverDue()).toBe(0);
      expect(redirecting.hits).toHaveLength(1);
      expect(elsewhere.hits).toHaveLength(0);
      expect(await row(w.id)).toMatchObject({ status: 'pending', attempts: 1, last_error: 'HTTP 302 (redirects are not followed)', claim_token: null });
    });

    it('reads a few KiB of an answer and drops the connection, however much the receiver sends', async () => {
      const tenant = await f.newTenant();
      const total = 256 * 1024 * 1024;
      let sent = 0;
      let closedAt = -1;
      const huge = await receiver((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = Buffer.alloc(64 * 1024, 'x');
        res.on('close', () => (closedAt = sent));
        const pump = () => {
          while (sent < total && !res.destroyed) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      });
      const w = await queue(tenant.tenantId, huge.url);
      const started = Date.now();
      expect(await dispatcher().deliverDue()).toBe(1);
      expect(Date.now() - started).toBeLessThan(5_000);
      await waitFor(() => closedAt >= 0, 5_000, 'the receiver sees the connection closed');
      expect(closedAt).toBeLessThan(16 * 1024 * 1024); // cut off long before the 256 MiB it meant to send
      expect((await row(w.id)).status).toBe('delivered');
    });

    it('counts a 2xx whose body stalls as delivered, at the deadline at the latest', async () => {
      const tenant = await f.newTenant();
      const stalling = await receiver((_req, res) => {
        res.writeHead(200);
        res.write('partial');
      });
      const w = await queue(tenant.tenantId, stalling.url);
      const started = Date.now();
      expect(await dispatcher({ timeoutMs: 1_500 }).deliverDue()).toBe(1);
      expect(Date.now() - started).toBeLessThan(4_000);
      expect((await row(w.id)).status).toBe('delivered');
    });

    it('gives each delivery one deadline, and a URL that never answers delays no other tenant', async () => {
      const slow = await receiver(() => undefined); // takes the request, never answers
      const fast = await receiver();
      const a = await f.newTenant();
      const b = await f.newTenant();
      // Two slots; tenant A has three alerts for the slow URL: it still holds one slot at most.
      const d = dispatcher({ timeoutMs: 6_000, concurrency: 2 });
      const aRows = [await queue(a.tenantId, slow.url), await queue(a.tenantId, slow.url), await queue(a.tenantId, slow.url)];
      d.onApplicationBootstrap();
      try {
        await waitFor(() => slow.hits.length === 1, 10_000, "A's first delivery under way");
        const bRow = await queue(b.tenantId, fast.url);
        await waitFor(() => fast.hits.length === 1, 5_000, "B's delivery");
        // B arrived while A's first delivery was still waiting, and A's others had not started.
        expect(slow.hits).toHaveLength(1);
        expect(fast.hits[0].at).toBeLessThan(slow.hits[0].at + 6_000);
        const aFirst = await Promise.all(aRows.map((r) => row(r.id)));
        expect(aFirst.filter((r) => r.claim_token !== null)).toHaveLength(1);
        // The one under way: the three were queued in one millisecond or so, and rows due at the same
        // time are taken in id order (PGlite's clock has millisecond steps), so it need not be the first.
        const underWay = aRows[aFirst.findIndex((r) => r.claim_token !== null)].id;
        await waitFor(async () => (await row(bRow.id)).status === 'delivered', 5_000, 'B recorded as delivered');
        await waitFor(async () => (await row(underWay)).last_error !== null, 10_000, "A's first delivery timed out");
        expect(await row(underWay)).toMatchObject({ status: 'pending', attempts: 1, last_error: 'no answer within 6000 ms', claim_token: null });
      } finally {
        await d.onApplicationShutdown();
      }
    }, 40_000);

    it('sends nothing unsigned: an event of a URL without a secret (set before one was required) waits, and goes out signed once a secret is set', async () => {
      const tenant = await f.newTenant();
      const target = await receiver();
      await t.dataSource.query(`UPDATE tenants SET alert_webhook_url = $2 WHERE id = $1`, [tenant.tenantId, target.url]);
      const id = randomUUID();
      await t.dataSource.query(`INSERT INTO outbound_webhooks (tenant_id, id, event_id, url, body, status) VALUES ($1, $2, $3, $4, '{}', 'pending')`, [tenant.tenantId, id, `alert_${id}`, target.url]);
      const d = dispatcher();
      expect(await d.deliverDue()).toBe(0);
      expect(await row(id)).toMatchObject({ status: 'pending', attempts: 1, last_error: 'no alertWebhookSecret is set: events are sent signed only' });
      expect(target.hits).toHaveLength(0);
      const secret = 'alert-secret-set-later-0123456789';
      await t.dataSource.query(`UPDATE tenants SET alert_webhook_secret_enc = $2 WHERE id = $1`, [tenant.tenantId, secrets.seal('alert', tenant.tenantId, secret)]);
      await t.dataSource.query(`UPDATE outbound_webhooks SET next_attempt_at = now() WHERE id = $1`, [id]); // skip the backoff
      expect(await d.deliverDue()).toBe(1);
      expect(verifySignature(target.hits[0].headers['x-inkstone-signature'] as string, secret, target.hits[0].body)).toEqual({ ok: true });
    });

    it("sends to the tenant's alert URL as it is at each attempt: one corrected after the event was queued gets it, one removed stops it", async () => {
      const tenant = await f.newTenant();
      const wrong = await receiver((_req, res) => {
        res.statusCode = 404;
        res.end();
      });
      const right = await receiver();
      const w = await queue(tenant.tenantId, wrong.url);
      const d = dispatcher();
      expect(await d.deliverDue()).toBe(0);
      expect(wrong.hits).toHaveLength(1);
      // The admin corrects the URL: what was still pending goes there.
      await t.dataSource.query(`UPDATE tenants SET alert_webhook_url = $2 WHERE id = $1`, [tenant.tenantId, right.url]);
      await t.dataSource.query(`UPDATE outbound_webhooks SET next_attempt_at = now() WHERE id = $1`, [w.id]); // skip the backoff
      expect(await d.deliverDue()).toBe(1);
      expect(right.hits.map((h) => JSON.parse(h.body).id)).toEqual([w.eventId]);
      expect(wrong.hits).toHaveLength(1);
      // Removed: a pending event is not sent anywhere, and says why.
      const next = await queue(tenant.tenantId, right.url);
      await t.dataSource.query(`UPDATE tenants SET alert_webhook_url = NULL WHERE id = $1`, [tenant.tenantId]);
      expect(await d.deliverDue()).toBe(0);
      expect(await row(next.id)).toMatchObject({ status: 'failed', last_error: 'no alert webhook URL is set (removed after the event was queued)' });
      expect(right.hits).toHaveLength(1);
    });

    it('retries a failing receiver for three days after the event, at most an hour apart, then gives up', async () => {
      const tenant = await f.newTenant();
      const down = await receiver((_req, res) => {
        res.statusCode = 503;
        res.end();
      });
      const w = await queue(tenant.tenantId, down.url);
      const d = dispatcher();
      const retryIn = async () =>
        Number((await t.dataSource.query(`SELECT extract(epoch FROM next_attempt_at - now())::float8 AS s FROM outbound_webhooks WHERE id = $1`, [w.id]))[0].s);
      // The 15th attempt, 70 hours after the event: retried in an hour (not 2^14 × 2 s).
      await t.dataSource.query(`UPDATE outbound_webhooks SET attempts = 14, created_at = now() - interval '70 hours' WHERE id = $1`, [w.id]);
      expect(await d.deliverDue()).toBe(0);
      expect(await row(w.id)).toMatchObject({ status: 'pending', attempts: 15 });
      expect(await retryIn()).toBeGreaterThan(3_500);
      expect(await retryIn()).toBeLessThanOrEqual(3_600);
      // An hour before the three days are up, the next retry would come after them: given up.
      await t.dataSource.query(`UPDATE outbound_webhooks SET next_attempt_at = now(), created_at = now() - interval '71.5 hours' WHERE id = $1`, [w.id]);
      expect(await d.deliverDue()).toBe(0);
      expect(await row(w.id)).toMatchObject({ status: 'failed', attempts: 16, last_error: 'HTTP 503' });
      expect(down.hits).toHaveLength(2);
    });

    it('carries the same event id on every attempt, signed with the tenant secret it keeps sealed', async () => {
      const tenant = await f.newTenant();
      const secret = 'alert-secret-for-webhooks-0123456789';
      await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '100.00', alertWebhookSecret: secret }).expect(200);
      let calls = 0;
      const flaky = await receiver((_req, res) => {
        res.statusCode = ++calls === 1 ? 503 : 200;
        res.end();
      });
      const w = await queue(tenant.tenantId, flaky.url);
      const d = dispatcher();
      expect(await d.deliverDue()).toBe(0);
      await t.dataSource.query(`UPDATE outbound_webhooks SET next_attempt_at = now() WHERE id = $1`, [w.id]); // skip the backoff
      expect(await d.deliverDue()).toBe(1);
      expect(flaky.hits.map((h) => h.headers[EVENT_ID_HEADER])).toEqual([w.eventId, w.eventId]);
      for (const h of flaky.hits) expect(verifySignature(h.headers['x-inkstone-signature'] as string, secret, h.body)).toEqual({ ok: true });
      expect(JSON.parse(flaky.hits[1].body).id).toBe(w.eventId);
      expect(await row(w.id)).toMatchObject({ status: 'delivered', attempts: 2 });
    });

    it('sends each alert once when two instances deliver at the same time', async () => {
      const slowish = await receiver((_req, res) => setTimeout(() => res.end('ok'), 50));
      const rows: Array<{ id: string; eventId: string }> = [];
      for (let i = 0; i < 8; i++) {
        const tenant = await f.newTenant();
        rows.push(await queue(tenant.tenantId, slowish.url), await queue(tenant.tenantId, slowish.url));
      }
      const other = await t.another();
      await other.get(WebhookDispatcher).onApplicationShutdown();
      const d1 = dispatcher({ concurrency: 4 });
      const d2 = dispatcher({ concurrency: 4 }, other.get(DataSource));
      let delivered = 0;
      const until = Date.now() + 30_000;
      while (delivered < rows.length && Date.now() < until) {
        const [x, y] = await Promise.all([d1.deliverDue(), d2.deliverDue()]);
        delivered += x + y;
      }
      expect(delivered).toBe(rows.length);
      const received = slowish.hits.map((h) => h.headers[EVENT_ID_HEADER] as string).sort();
      expect(received).toEqual(rows.map((r) => r.eventId).sort()); // every one, none twice
      const statuses = await t.dataSource.query(`SELECT status, attempts FROM outbound_webhooks WHERE id = ANY($1)`, [rows.map((r) => r.id)]);
      expect(statuses.every((s: { status: string; attempts: number }) => s.status === 'delivered' && s.attempts === 1)).toBe(true);
    });
  });
});
