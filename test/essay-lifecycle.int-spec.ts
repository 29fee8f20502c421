import { DataSource } from 'typeorm';
import { EssaysRepository } from '../src/grading/essays.repository';
import type { StoredGrade } from '../src/grading/grading.service';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';

/** Every change of an essay's status goes through one function, which allows only the lifecycle's moves. */
describe('essay lifecycle (real PostgreSQL)', () => {
  let t: TestApp;
  let ds: DataSource;
  let essays: EssaysRepository;
  let tenant: TestTenant;
  let f: Factory;

  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
    ds = t.dataSource;
    essays = t.app.get(EssaysRepository);
    f = new Factory(t.app);
    tenant = await f.newTenant();
  });
  afterAll(() => t.close());

  const status = async (id: string) => (await ds.query(`SELECT status FROM essays WHERE id = $1`, [id]))[0].status as string;
  const grade = { score: 40, maxScore: 60, dimensions: [], summary: 'ok', source: 'model' } as unknown as StoredGrade;
  const outcome = { status: 'graded' as const, grade, flags: [], costNanos: 0n, cache: 'miss', similar: null };

  it('takes a queued essay through grading to graded', async () => {
    const id = await f.essay(tenant.adminKey, { seed: 1 });
    expect(await status(id)).toBe('queued');
    expect(await essays.startGrading(ds.manager, tenant.tenantId, id)).toMatchObject({ id, status: 'grading' });
    expect(await essays.storeGrade(ds.manager, tenant.tenantId, id, outcome)).toBe(true);
    expect(await status(id)).toBe('graded');
  });

  it('refuses moves the lifecycle does not allow, and writes nothing', async () => {
    const id = await f.essay(tenant.adminKey, { seed: 2 });
    // queued → graded skips grading
    expect(await essays.storeGrade(ds.manager, tenant.tenantId, id, outcome)).toBe(false);
    expect(await status(id)).toBe('queued');
    await essays.startGrading(ds.manager, tenant.tenantId, id);
    expect(await essays.fail(ds.manager, tenant.tenantId, id, 'GRADING_FAILED', 'test')).toBe(true);
    // failed is final: no grade, no requeue, no second start
    expect(await essays.storeGrade(ds.manager, tenant.tenantId, id, outcome)).toBe(false);
    expect(await essays.requeue(ds.manager, tenant.tenantId, id)).toBe(false);
    expect(await essays.startGrading(ds.manager, tenant.tenantId, id)).toBeNull();
    const [row] = await ds.query(`SELECT status, grade, failure_code FROM essays WHERE id = $1`, [id]);
    expect(row).toEqual({ status: 'failed', grade: null, failure_code: 'GRADING_FAILED' });
  });

  it("does not move another tenant's essay", async () => {
    const other = await f.newTenant();
    const id = await f.essay(tenant.adminKey, { seed: 3 });
    expect(await essays.startGrading(ds.manager, other.tenantId, id)).toBeNull();
    expect(await essays.fail(ds.manager, other.tenantId, id, 'GRADING_FAILED', 'not yours')).toBe(false);
    expect(await status(id)).toBe('queued');
    await t.http.get(`/v1/essays/${id}`).set(bearer(other.adminKey)).expect(404);
  });
});
