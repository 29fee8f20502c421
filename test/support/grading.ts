import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { bearer } from './factories';
import { waitFor } from './wait';

const TERMINAL = ['graded', 'failed', 'needs_review'];

/** Waits until every essay has reached a final status; returns their views. */
export async function waitForEssays(app: NestFastifyApplication, key: string, ids: string[], timeoutMs = 30_000): Promise<any[]> {
  const http = request(app.getHttpServer());
  const views = new Map<string, any>();
  await waitFor(
    async () => {
      for (const id of ids) {
        if (views.has(id)) continue;
        const res = await http.get(`/v1/essays/${id}`).set(bearer(key));
        if (res.status === 200 && TERMINAL.includes(res.body.status)) views.set(id, res.body);
      }
      return views.size === ids.length;
    },
    timeoutMs,
    `${ids.length} essays to be graded`,
  );
  return ids.map((id) => views.get(id));
}

/** Grades read straight from the database, to check what was stored. */
export async function storedEssays(ds: DataSource, tenantId: string) {
  return ds.query(`SELECT id, status, grade, model_grade, flags, cost_nanos, cache_status, similar_essay_id, similarity FROM essays WHERE tenant_id = $1`, [
    tenantId,
  ]);
}
