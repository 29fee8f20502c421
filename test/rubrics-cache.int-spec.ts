import { DataSource } from 'typeorm';
import { CreateRubricDto } from '../src/grading/dto/rubric.dto';
import { RUBRIC_CACHE_MAX, RubricsService } from '../src/grading/rubrics.service';
import { Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';

/**
 * Resolved rubric versions are kept in memory (a version never changes), but only the
 * RUBRIC_CACHE_MAX most recently used: a tenant writing thousands of versions cannot grow a
 * process's memory with them, and a version in use stays cached while others pass through.
 */
describe('rubric versions cache: bounded, most recently used kept (real PostgreSQL)', () => {
  let t: TestApp;
  let ds: DataSource;
  let rubrics: RubricsService;
  let tenant: TestTenant;

  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
    ds = t.dataSource;
    rubrics = t.app.get(RubricsService);
    tenant = await new Factory(t.app).newTenant();
  });
  afterAll(() => t.close());

  const body: CreateRubricDto = {
    key: 'zh-junior-50',
    name: '初中作文',
    language: 'zh',
    totalRule: 'sum',
    dimensions: [
      { key: 'content', name: '内容', max: 30, kind: 'content', description: '中心明确' },
      { key: 'language', name: '语言', max: 20, kind: 'language', description: '通顺' },
    ],
  } as CreateRubricDto;

  it(`holds at most ${RUBRIC_CACHE_MAX} versions, keeping the one in use`, async () => {
    await rubrics.create(tenant.admin, body);
    const versions = RUBRIC_CACHE_MAX + 200;
    // Versions 2 … n, as PUT /v1/rubrics/:key would write them.
    await ds.query(
      `INSERT INTO rubrics (tenant_id, key, version, definition)
       SELECT tenant_id, key, v, jsonb_set(definition, '{version}', to_jsonb(v)) FROM rubrics, generate_series(2, $2) v
        WHERE tenant_id = $1 AND key = 'zh-junior-50' AND version = 1`,
      [tenant.tenantId, versions],
    );
    const resolve = (v: number) => rubrics.resolve(tenant.tenantId, 'zh-junior-50', v);
    expect((await resolve(1)).version).toBe(1);
    for (let v = 2; v <= versions; v++) {
      expect((await resolve(v)).version).toBe(v);
      await resolve(1); // version 1 is graded with all along
      expect(rubrics.cachedVersions).toBeLessThanOrEqual(RUBRIC_CACHE_MAX);
    }
    expect(rubrics.cachedVersions).toBe(RUBRIC_CACHE_MAX);

    // What is cached is served without the database; what was evicted is read again.
    await ds.query(`DELETE FROM rubrics WHERE tenant_id = $1`, [tenant.tenantId]);
    expect((await resolve(1)).version).toBe(1);
    expect((await resolve(versions)).version).toBe(versions);
    await expect(resolve(2)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
