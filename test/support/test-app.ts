import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { createApp, CreateAppOptions } from '../../src/app.factory';
import { AppConfig, loadConfig } from '../../src/config/app-config';
import { LLM_MODELS, LlmModels } from '../../src/llm/llm-models';
import { TEST_SECRET_KEY } from './spawn-service';
import { createTestDatabase, TestDatabase } from './test-database';

export const OPERATOR_TOKEN = 'test-operator-token-0123456789';

/** The environment a test app starts with; a test adds or overrides variables. */
export function testEnv(databaseUrl: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    NODE_ENV: 'test',
    INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN,
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PORT: '0',
    HOST: '127.0.0.1',
    SHUTDOWN_GRACE_MS: '2000',
    // Tests send bursts a person would not: the per-key and per-tenant rate limits are tested on their own.
    LIMIT_REQUESTS_PER_SECOND_PER_KEY: '100000',
    LIMIT_REQUEST_BURST_PER_KEY: '100000',
    LIMIT_REQUESTS_PER_SECOND_PER_TENANT: '100000',
    LIMIT_REQUEST_BURST_PER_TENANT: '100000',
    INKSTONE_SECRET_KEY: TEST_SECRET_KEY,
    ...extra,
  };
}

export interface TestApp {
  app: NestFastifyApplication;
  config: AppConfig;
  /** the catalog, the providers with a key and the tiers the app runs with */
  models: LlmModels;
  db: TestDatabase;
  dataSource: DataSource;
  http: ReturnType<typeof request>;
  /** Another app instance on the same database (as a second server process would be). */
  another(extra?: Record<string, string>): Promise<NestFastifyApplication>;
  close(): Promise<void>;
}

/** The whole app, in process, on a database of this test file's own. */
export async function createTestApp(extra: Record<string, string> = {}, options: CreateAppOptions = {}): Promise<TestApp> {
  const db = await createTestDatabase();
  const config = loadConfig(testEnv(db.url, extra));
  const app = await createApp(config, options);
  await app.getHttpAdapter().getInstance().ready();
  const others: NestFastifyApplication[] = [];
  return {
    app,
    config,
    models: app.get<LlmModels>(LLM_MODELS),
    db,
    dataSource: app.get(DataSource),
    http: request(app.getHttpServer()),
    another: async (more = {}) => {
      const other = await createApp(loadConfig(testEnv(db.url, { ...extra, ...more })));
      await other.getHttpAdapter().getInstance().ready();
      others.push(other);
      return other;
    },
    close: async () => {
      for (const o of others) await o.close();
      await app.close();
      await db.drop();
    },
  };
}
