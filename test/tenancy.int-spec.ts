import { DataSource } from 'typeorm';
import { ApiError } from '../src/common/errors';
import { createDataSource } from '../src/db/data-source';
import { MissingTenantError, perRowTenantQuery, preparesStatements, TenantScopedRepository, tenantQuery, usePreparedStatements } from '../src/db/tenant-scope';
import { ApiKeyEntity } from '../src/tenancy/api-key.entity';
import { generateApiKey } from '../src/tenancy/api-key-secret';
import { ApiKeysService } from '../src/tenancy/api-keys.service';
import { Client } from 'pg';
import { BUS_CHANNEL as BUS_CHANNEL_NAME, ClusterBus } from '../src/db/cluster-bus';
import { bearer, Factory } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';
import { serverUrl } from './support/test-database';
import { waitFor } from './support/wait';

describe('tenants and API keys (real PostgreSQL)', () => {
  let t: TestApp;
  let f: Factory;
  let keys: ApiKeysService;
  let ds: DataSource;

  beforeAll(async () => {
    t = await createTestApp();
    f = new Factory(t.app);
    keys = t.app.get(ApiKeysService);
    ds = t.dataSource;
  });
  afterAll(() => t.close());

  it('creates a tenant with its first admin key, stored only as a hash', async () => {
    const tenant = await f.newTenant({ monthlyBudget: '5000.00', timezone: 'Europe/Berlin' });
    const [row] = await ds.query(`SELECT name, timezone, monthly_cap_nanos FROM tenants WHERE id = $1`, [tenant.tenantId]);
    expect(row.timezone).toBe('Europe/Berlin');
    expect(row.monthly_cap_nanos).toBe('5000000000000');
    const stored = await ds.query(`SELECT prefix, key_hash, role FROM api_keys WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(stored).toHaveLength(1);
    expect(stored[0].role).toBe('admin');
    const raw = JSON.stringify(stored);
    expect(raw).not.toContain(tenant.adminKey.slice(-43));
    expect(await keys.authenticate(tenant.adminKey)).toEqual(tenant.admin);
  });

  it('authenticates a key, records its use, and forgets it once revoked', async () => {
    const tenant = await f.newTenant();
    const teacher = await f.newKey(tenant, 'teacher');
    expect(await keys.authenticate(teacher.key)).toEqual(teacher.auth);
    await waitFor(async () => {
      const [r] = await ds.query(`SELECT last_used_at FROM api_keys WHERE id = $1`, [teacher.id]);
      return r.last_used_at !== null;
    });
    await keys.revoke(tenant.admin.tenantId, teacher.id);
    expect(await keys.authenticate(teacher.key)).toBeNull();
    // Revoking again changes nothing and does not fail.
    await keys.revoke(tenant.admin.tenantId, teacher.id);
    const [r] = await ds.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [teacher.id]);
    expect(r.revoked_at).toBeInstanceOf(Date);
  });

  it('refuses to revoke the last active admin key, even under concurrent revocations', async () => {
    const tenant = await f.newTenant();
    await expect(keys.revoke(tenant.admin.tenantId, tenant.adminKeyId)).rejects.toMatchObject({ code: 'CONFLICT' });
    const second = await f.newKey(tenant, 'admin');
    const results = await Promise.allSettled([keys.revoke(tenant.admin.tenantId, tenant.adminKeyId), keys.revoke(second.auth.tenantId, second.id)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(ApiError);
    const [{ n }] = await ds.query(
      `SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1 AND role = 'admin' AND revoked_at IS NULL`,
      [tenant.tenantId],
    );
    expect(n).toBe(1);
  });

  it("answers 'not found' for another tenant's key and leaves it alone", async () => {
    const a = await f.newTenant();
    const b = await f.newTenant();
    const bTeacher = await f.newKey(b, 'teacher');
    await expect(keys.revoke(a.admin.tenantId, bTeacher.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(keys.revoke(a.admin.tenantId, 'not-a-uuid')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await keys.authenticate(bTeacher.key)).toEqual(bTeacher.auth);
    expect((await keys.list(a.admin.tenantId)).keys.map((k) => k.id)).not.toContain(bTeacher.id);
  });

  it('lists every active key and the latest 100 revoked ones, however many the tenant revoked', async () => {
    // Revoked keys count against no limit: a tenant can pile up any number, and a whole listing
    // of 200,000 of them ran the process out of memory.
    const tenant = await f.newTenant();
    const teachers = [await f.newKey(tenant, 'teacher'), await f.newKey(tenant, 'teacher')];
    const revoke = (n: number, from: number) =>
      ds.query(
        `INSERT INTO api_keys (id, tenant_id, name, role, prefix, key_hash, created_at, revoked_at)
         SELECT gen_random_uuid(), $1, 'old ' || i, 'teacher', 'r' || replace(gen_random_uuid()::text, '-', ''), sha256(gen_random_uuid()::text::bytea),
                now() - interval '1 day', now() - (i * interval '1 second')
           FROM generate_series($2::int, $2::int + $3::int - 1) i`,
        [tenant.tenantId, from, n],
      );
    await revoke(100, 1);
    let listed = await keys.list(tenant.admin.tenantId);
    expect(listed.moreRevoked).toBe(false);
    expect(listed.keys).toHaveLength(3 + 100);
    await revoke(150, 101);
    listed = await keys.list(tenant.admin.tenantId);
    expect(listed.moreRevoked).toBe(true);
    // The active keys first, oldest first; then the revoked ones, the latest revocation first.
    expect(listed.keys.slice(0, 3).map((k) => k.id)).toEqual([tenant.adminKeyId, ...teachers.map((k) => k.id)]);
    expect(listed.keys.slice(3).map((k) => k.name)).toEqual(Array.from({ length: 100 }, (_, i) => `old ${i + 1}`));
    const res = await t.http.get('/v1/api-keys').set(bearer(tenant.adminKey)).expect(200);
    expect(res.body.data).toHaveLength(103);
    expect(res.body.moreRevoked).toBe(true);
  });

  it('rejects wrong and malformed keys', async () => {
    const tenant = await f.newTenant();
    const wrongSecret = tenant.adminKey.slice(0, -4) + 'AAAA';
    expect(await keys.authenticate(wrongSecret)).toBeNull();
    expect(await keys.authenticate('isk_nothing')).toBeNull();
  });

  it('refuses a revoked or unknown key again without reading the database', async () => {
    const tenant = await f.newTenant();
    const teacher = await f.newKey(tenant, 'teacher');
    const unknown = generateApiKey().key;
    const reads = jest.spyOn(ds, 'query');
    const prefixReads = () => reads.mock.calls.filter(([sql]) => /FROM api_keys WHERE prefix/.test(String(sql))).length;
    try {
      for (let i = 0; i < 5; i++) expect(await keys.authenticate(unknown)).toBeNull();
      expect(prefixReads()).toBe(1);
      expect(await keys.authenticate(teacher.key)).toEqual(teacher.auth);
      await keys.revoke(tenant.admin.tenantId, teacher.id);
      const before = prefixReads();
      for (let i = 0; i < 5; i++) expect(await keys.authenticate(teacher.key)).toBeNull();
      expect(prefixReads() - before).toBe(1);
      // The tenant's other keys, and a key issued now, are not touched by the refusals.
      expect(await keys.authenticate(tenant.adminKey)).toEqual(tenant.admin);
      const next = await f.newKey(tenant, 'teacher');
      expect(await keys.authenticate(next.key)).toEqual(next.auth);
    } finally {
      reads.mockRestore();
    }
  });

  describe('the tenant-scoped data access helper', () => {
    it('refuses to run without a tenant id', async () => {
      for (const bad of [undefined, null, '', 'abc']) {
        expect(() => new TenantScopedRepository(ds.manager, ApiKeyEntity, bad as unknown as string)).toThrow(MissingTenantError);
        await expect(tenantQuery(ds.manager, bad as unknown as string, 'SELECT 1 FROM api_keys WHERE tenant_id = $1')).rejects.toThrow(
          MissingTenantError,
        );
      }
    });

    it('refuses raw SQL that does not filter on the tenant', async () => {
      const tenant = await f.newTenant();
      await expect(tenantQuery(ds.manager, tenant.tenantId, 'SELECT * FROM api_keys')).rejects.toThrow(/tenant_id = \$1/);
    });

    it("sees only its own tenant's rows, for reads, updates and deletes", async () => {
      const a = await f.newTenant();
      const b = await f.newTenant();
      const repoA = new TenantScopedRepository(ds.manager, ApiKeyEntity, a.tenantId);
      expect((await repoA.find()).map((k) => k.tenantId)).toEqual([a.tenantId]);
      expect(await repoA.findOne({ id: b.adminKeyId })).toBeNull();
      expect(await repoA.update({ id: b.adminKeyId }, { name: 'hijacked' })).toBe(0);
      expect(await repoA.delete({ id: b.adminKeyId })).toBe(0);
      const [row] = await ds.query(`SELECT name FROM api_keys WHERE id = $1`, [b.adminKeyId]);
      expect(row.name).toBe('Initial admin key');
      const rows = await tenantQuery<{ id: string }>(ds.manager, a.tenantId, 'SELECT id FROM api_keys WHERE tenant_id = $1');
      expect(rows.map((r) => r.id)).toEqual([a.adminKeyId]);
    });
  });

  describe('named prepared statements (the settlement)', () => {
    it('are used with a PostgreSQL server unless turned off, never with PGlite, whose connections share one session', async () => {
      expect(preparesStatements(ds)).toBe(serverUrl() !== undefined);
      const off = await t.another({ DATABASE_PREPARED_STATEMENTS: 'false' });
      expect(preparesStatements(off.get(DataSource))).toBe(false);
    });

    it('prepare a named statement once a connection and run it with any parameters, only where the data source allows it', async () => {
      const [a, b] = await Promise.all([f.newTenant(), f.newTenant()]);
      const SQL = `SELECT t.id::text AS id, t.name FROM unnest($1::uuid[]) AS k(tenant_id) JOIN tenants t ON t.id = k.tenant_id ORDER BY t.name`;
      const NAME = 'inkstone_test_named';
      const prepared = async (d: DataSource) => (await d.query(`SELECT name FROM pg_prepared_statements WHERE name = $1`, [NAME])).length;
      // One connection each, so that the statement and the check run in one session.
      const plain = createDataSource(t.db.url, 1);
      const named = createDataSource(t.db.url, 1);
      await Promise.all([plain.initialize(), named.initialize()]);
      usePreparedStatements(named);
      try {
        // Not allowed: the name is ignored.
        expect(await perRowTenantQuery(plain.manager, [a.tenantId], SQL, [], { preparedAs: NAME })).toEqual([{ id: a.tenantId, name: expect.any(String) }]);
        expect(await prepared(plain)).toBe(0);
        // Allowed: prepared on the first run, then bound with other parameters, each run answering its own.
        for (const ids of [[a.tenantId], [b.tenantId], [a.tenantId, b.tenantId]]) {
          const rows = await perRowTenantQuery<{ id: string }>(named.manager, ids, SQL, [], { preparedAs: NAME });
          expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort());
        }
        expect(await prepared(named)).toBe(1);
        // The tenant checks still come first.
        await expect(perRowTenantQuery(named.manager, ['not-a-tenant'], SQL, [], { preparedAs: NAME })).rejects.toThrow(MissingTenantError);
      } finally {
        await named.query(`DEALLOCATE ${NAME}`); // (PGlite's one session outlives the connection)
        await Promise.all([plain.destroy(), named.destroy()]);
      }
    });

    it('run once as plain text when the server lost the name or already has it (a pooler), and stop naming statements on that data source', async () => {
      const tenant = await f.newTenant();
      // A statement that changes something, to show that the named attempt ran nothing: each run appends one mark.
      const SQL = `UPDATE tenants t SET name = t.name || '+' FROM unnest($1::uuid[]) AS k(tenant_id) WHERE t.id = k.tenant_id RETURNING t.name`;
      const NAME = 'inkstone_test_lost';
      const name = async () => ((await ds.query(`SELECT name FROM tenants WHERE id = $1`, [tenant.tenantId])) as Array<{ name: string }>)[0].name;
      const lose = {
        // The name is gone (26000): prepared by a first run, then deallocated behind the driver's back.
        gone: async (d: DataSource) => {
          await perRowTenantQuery(d.manager, [tenant.tenantId], SQL, [], { preparedAs: NAME });
          await d.query(`DEALLOCATE ${NAME}`);
        },
        // The name is taken (42P05): prepared on the server by someone else before the driver's first use.
        taken: (d: DataSource) => d.query(`PREPARE ${NAME} AS SELECT 1`),
      };
      for (const how of ['gone', 'taken'] as const) {
        const d = createDataSource(t.db.url, 1);
        await d.initialize();
        usePreparedStatements(d);
        try {
          await lose[how](d);
          const before = await name();
          const rows = await perRowTenantQuery<{ name: string }>(d.manager, [tenant.tenantId], SQL, [], { preparedAs: NAME });
          expect({ how, rows }).toEqual({ how, rows: [{ name: `${before}+` }] }); // run once, not twice
          expect(await name()).toBe(`${before}+`);
          expect(preparesStatements(d)).toBe(false);
          // From then on plain text: nothing new is prepared.
          await perRowTenantQuery(d.manager, [tenant.tenantId], SQL, [], { preparedAs: 'inkstone_test_after' });
          expect(await d.query(`SELECT name FROM pg_prepared_statements WHERE name = 'inkstone_test_after'`)).toEqual([]);
          expect(await name()).toBe(`${before}++`);
        } finally {
          await d.query(`DEALLOCATE ALL`);
          await d.destroy();
        }
      }
    });
  });

  (serverUrl() ? it : it.skip)("drops a bus notification of an unknown shape with a warning, and goes on delivering (one stopped every instance on the database: another version's message, a NOTIFY by hand)", async () => {
    const bus = new ClusterBus(t.config, ds);
    const got: unknown[] = [];
    const errors: unknown[] = [];
    const uncaught = (err: unknown) => errors.push(err);
    process.on('uncaughtException', uncaught);
    // (as the real subscribers do: a payload of another shape throws in the subscriber, and is logged there)
    const off = bus.on<{ tenantId: string }>('budget', ({ tenantId }) => got.push({ tenantId }));
    try {
      await bus.onApplicationBootstrap();
      for (const payload of ['null', '[1]', '{"o":"x","m":[null]}', '{"o":"x","m":[5]}', '{"o":"x","m":[["error",{}]]}', '{"o":"x","m":"budget"}', '{"o":"x","m":[["budget",null],["budget",{"tenantId":"a"}]]}']) {
        await ds.query('SELECT pg_notify($1, $2)', [BUS_CHANNEL_NAME, payload]);
      }
      await waitFor(() => got.length === 1, 10_000, 'the well-formed message');
      expect(got).toEqual([{ tenantId: 'a' }]);
      expect(errors).toEqual([]);
    } finally {
      off();
      process.off('uncaughtException', uncaught);
      await bus.onApplicationShutdown();
    }
  });

  (serverUrl() ? it : it.skip)('keeps the cluster bus when the first probe at start is lost: it probes again before giving up on other instances', async () => {
    const real = ds.query.bind(ds);
    let lost = 0;
    const query = jest.spyOn(ds, 'query').mockImplementation(((sql: string, params?: unknown[], runner?: unknown) => {
      if (/pg_notify/.test(sql) && String(params?.[1]).includes('"probe"') && lost++ === 0) return Promise.reject(new Error('connection reset'));
      return real(sql, params, runner as never);
    }) as never);
    const bus = new ClusterBus(t.config, ds);
    try {
      await bus.onApplicationBootstrap();
      expect(lost).toBeGreaterThanOrEqual(2);
      expect(bus.clustered).toBe(true);
    } finally {
      query.mockRestore();
      await bus.onApplicationShutdown();
    }
  });

  (serverUrl() ? it : it.skip)("listens on one connection after a failure whose `end` comes late, while the new connection is still being made (a second listener delivered every message twice)", async () => {
    const bus = new ClusterBus(t.config, ds);
    type Inside = { listener?: Client; listen(): Promise<void> };
    const inside = bus as unknown as Inside;
    await bus.onApplicationBootstrap();
    const first = inside.listener!;
    const realListen = inside.listen.bind(bus);
    let made = 0;
    // The new connection is slow to make (a database restarting): the failed one's `end` comes meanwhile.
    const listen = jest.spyOn(inside, 'listen').mockImplementation(async () => {
      if (made++ === 0) {
        first.emit('end');
        await new Promise((r) => setTimeout(r, 1_500));
      }
      return realListen();
    });
    const listening = async () => (await ds.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'inkstone-bus'`))[0].n as number;
    try {
      const before = await listening();
      first.emit('error', new Error('connection reset (test)'));
      await waitFor(() => inside.listener !== undefined && inside.listener !== first, 10_000, 'a new listener');
      await new Promise((r) => setTimeout(r, 1_500)); // a second reconnect, had one started, has listened by now
      expect(listen).toHaveBeenCalledTimes(1);
      // One new connection (the failed one, only told it failed here, is still open until the end).
      expect((await listening()) - before).toBe(1);
    } finally {
      listen.mockRestore();
      await bus.onApplicationShutdown();
      await first.end().catch(() => undefined);
    }
  });
});
