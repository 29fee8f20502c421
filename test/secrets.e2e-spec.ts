import { ClusterBus } from '../src/db/cluster-bus';
import { randomBytes, randomUUID } from 'node:crypto';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { TenantSecretsService } from '../src/billing/tenant-secrets.service';
import { keyIdOf, SecretBox } from '../src/common/secret-box';
import { signPayload } from '../src/common/signature';
import { ConfigError } from '../src/config/env-reader';
import { bearer, Factory, TestTenant } from './support/factories';
import { collect, exited, freePort, runService, TEST_SECRET_KEY } from './support/spawn-service';
import { createTestApp, OPERATOR_TOKEN, TestApp } from './support/test-app';
import { TenantsRepository } from '../src/tenancy/tenants.repository';

const TEST_KEY = Buffer.from(TEST_SECRET_KEY, 'hex');
const PAY = 'whsec_payment_secret_at_rest_0123456789';
const ALERT = 'alert_secret_at_rest_abcdefghijklmnop';

/** Every form a stored secret must not appear in. */
const forms = (s: string) => [s, Buffer.from(s).toString('base64'), Buffer.from(s).toString('base64url'), Buffer.from(s).toString('hex'), Buffer.from(s).toString('hex').toUpperCase()];

describe('webhook secrets sealed at rest (AES-256-GCM under INKSTONE_SECRET_KEY)', () => {
  let t: TestApp;
  let f: Factory;

  beforeAll(async () => {
    t = await createTestApp();
    f = new Factory(t.app);
  });
  afterAll(() => t.close());

  const rawRow = async (tenantId: string) => (await t.dataSource.query(`SELECT row_to_json(t)::text AS raw FROM tenants t WHERE id = $1`, [tenantId]))[0].raw as string;
  const columns = async (tenantId: string) =>
    (
      await t.dataSource.query(
        `SELECT payment_webhook_secret_enc AS payment, payment_webhook_secret AS payment_legacy, alert_webhook_secret_enc AS alert, alert_webhook_secret AS alert_legacy
           FROM tenants WHERE id = $1`,
        [tenantId],
      )
    )[0];
  /** A payment event for an order that does not exist: 404 once the signature is accepted, 401 if not. */
  const paymentWebhook = (app: NestFastifyApplication, tenantId: string, secret: string) => {
    const body = JSON.stringify({ id: `evt_${randomUUID()}`, type: 'payment.succeeded', data: { orderId: randomUUID(), amount: '9.90' } });
    return request(app.getHttpServer())
      .post(`/v1/payments/webhook/${tenantId}`)
      .set('Content-Type', 'application/json')
      .set('X-Inkstone-Signature', signPayload(secret, body))
      .send(body);
  };
  const setSecrets = async (tenant: TestTenant) => {
    await t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: PAY }).expect(200);
    await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '100.00', alertWebhookSecret: ALERT }).expect(200);
  };

  it('stores both secrets sealed: the raw row holds neither secret, nor its base64 or hex', async () => {
    const tenant = await f.newTenant();
    await setSecrets(tenant);
    const raw = await rawRow(tenant.tenantId);
    for (const form of [...forms(PAY), ...forms(ALERT)]) expect(raw).not.toContain(form);
    const c = await columns(tenant.tenantId);
    expect(c.payment).toMatch(new RegExp(`^enc:v1:${keyIdOf(TEST_KEY)}:`));
    expect(c.alert).toMatch(new RegExp(`^enc:v1:${keyIdOf(TEST_KEY)}:`));
    expect([c.payment_legacy, c.alert_legacy]).toEqual([null, null]);
    expect((await t.http.get('/v1/billing/settings').set(bearer(tenant.adminKey)).expect(200)).body.webhookSecretSet).toBe(true);
    // Verifying uses the unsealed secret.
    await paymentWebhook(t.app, tenant.tenantId, PAY).expect(404);
    await paymentWebhook(t.app, tenant.tenantId, 'another-secret-0123456789').expect(401);
  });

  it('keeps a sealed value to its own tenant: copied to another row it does not open', async () => {
    const a = await f.newTenant();
    const b = await f.newTenant();
    await setSecrets(a);
    await t.dataSource.query(`UPDATE tenants SET payment_webhook_secret_enc = (SELECT payment_webhook_secret_enc FROM tenants WHERE id = $1) WHERE id = $2`, [a.tenantId, b.tenantId]);
    const res = await paymentWebhook(t.app, b.tenantId, PAY);
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.body)).not.toContain(PAY);
  });

  it('seals plaintext secrets from before at start, and one an older instance writes later when it is first read', async () => {
    const tenant = await f.newTenant();
    await t.dataSource.query(`UPDATE tenants SET payment_webhook_secret = $2, alert_webhook_secret = $3, payment_mode = 'webhook', deep_review_price_nanos = 9900000000 WHERE id = $1`, [
      tenant.tenantId,
      PAY,
      ALERT,
    ]);
    const restarted = await t.another(); // a start after the upgrade
    const c = await columns(tenant.tenantId);
    expect([c.payment_legacy, c.alert_legacy]).toEqual([null, null]);
    expect(c.payment).toMatch(/^enc:v1:/);
    const raw = await rawRow(tenant.tenantId);
    for (const form of [...forms(PAY), ...forms(ALERT)]) expect(raw).not.toContain(form);
    await paymentWebhook(restarted, tenant.tenantId, PAY).expect(404);
    expect(await t.app.get(TenantSecretsService).read('alert', tenant.tenantId)).toBe(ALERT);

    // An instance of the old version, still running, writes a new plaintext secret: it is the newer value.
    const newer = 'whsec_written_by_an_older_instance_42';
    await t.dataSource.query(`UPDATE tenants SET payment_webhook_secret = $2 WHERE id = $1`, [tenant.tenantId, newer]);
    await paymentWebhook(t.app, tenant.tenantId, PAY).expect(401);
    await paymentWebhook(t.app, tenant.tenantId, newer).expect(404);
    const after = await columns(tenant.tenantId);
    expect(after.payment_legacy).toBeNull();
    expect(await rawRow(tenant.tenantId)).not.toContain(newer);
    await paymentWebhook(t.app, tenant.tenantId, newer).expect(404);
  });
});

describe('rotating INKSTONE_SECRET_KEY, and starting with the wrong one', () => {
  let t: TestApp;
  let f: Factory;
  const next = randomBytes(32);

  beforeAll(async () => {
    t = await createTestApp();
    f = new Factory(t.app);
  });
  afterAll(() => t.close());

  it('reads values sealed with the previous key, and seals them again with the current one at start', async () => {
    const tenant = await f.newTenant();
    await t.http.put('/v1/billing/settings').set(bearer(tenant.adminKey)).send({ deepReviewPrice: '9.90', paymentMode: 'webhook', webhookSecret: PAY }).expect(200);
    const [{ sealed }] = await t.dataSource.query(`SELECT payment_webhook_secret_enc AS sealed FROM tenants WHERE id = $1`, [tenant.tenantId]);
    expect(sealed).toMatch(new RegExp(`^enc:v1:${keyIdOf(TEST_KEY)}:`));

    // Reading: a process holding the new key and the previous one opens the old value.
    const rotatedBox = new SecretBox(next, [TEST_KEY]);
    expect(await new TenantSecretsService(new TenantsRepository(t.dataSource), rotatedBox, t.app.get(ClusterBus)).open('payment', tenant.tenantId, sealed, null)).toBe(PAY);

    // Starting with the new key (the old one as previous) seals every value with the new key.
    const rotated = await t.another({ INKSTONE_SECRET_KEY: next.toString('base64'), INKSTONE_SECRET_KEY_PREVIOUS: TEST_SECRET_KEY });
    const [{ resealed }] = await t.dataSource.query(`SELECT payment_webhook_secret_enc AS resealed FROM tenants WHERE id = $1`, [tenant.tenantId]);
    expect(resealed).toMatch(new RegExp(`^enc:v1:${keyIdOf(next)}:`));
    const body = JSON.stringify({ id: `evt_${randomUUID()}`, type: 'payment.succeeded', data: { orderId: randomUUID(), amount: '9.90' } });
    await request(rotated.getHttpServer())
      .post(`/v1/payments/webhook/${tenant.tenantId}`)
      .set('Content-Type', 'application/json')
      .set('X-Inkstone-Signature', signPayload(PAY, body))
      .send(body)
      .expect(404); // signature accepted; the order is unknown

    // The old key alone no longer opens them: a start with it is refused, naming the key ids.
    const stale = new TenantSecretsService(new TenantsRepository(t.dataSource), new SecretBox(TEST_KEY), t.app.get(ClusterBus));
    await expect(stale.onModuleInit()).rejects.toThrow(ConfigError);
    await expect(stale.onModuleInit()).rejects.toThrow(
      new RegExp(`^INKSTONE_SECRET_KEY does not open the stored webhook secrets: \\d+ with key ${keyIdOf(next)}, which is neither INKSTONE_SECRET_KEY \\(key ${keyIdOf(TEST_KEY)}\\)`),
    );
  });

  it.each([
    ['a wrong key', () => randomBytes(32).toString('hex'), /^inkstone: configuration error: INKSTONE_SECRET_KEY does not open the stored webhook secrets: \d+ with key [0-9a-f]{8}, which is neither INKSTONE_SECRET_KEY \(key [0-9a-f]{8}\) nor in INKSTONE_SECRET_KEY_PREVIOUS; start with the key they were sealed with/],
    ['no key', () => '', /^inkstone: configuration error: INKSTONE_SECRET_KEY is required when DATABASE_URL is set: 32 random bytes as base64 or hex/],
  ])('a process started with %s stops with one line', async (_what, key, line) => {
    const child = runService({ INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN, DATABASE_URL: t.config.databaseUrl!, INKSTONE_SECRET_KEY: key(), LOG_LEVEL: 'warn', PORT: String(await freePort()) });
    const output = collect(child);
    const guard = setTimeout(() => child.kill('SIGKILL'), 50_000);
    try {
      expect(await exited(child)).toBe(1);
    } finally {
      clearTimeout(guard);
    }
    const lines = output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(line);
  }, 60_000);
});
