import { FakeProvider, startFakeProvider } from '../fake-provider/fake-provider';
import { Factory, TestTenant } from './factories';
import { providerEnv } from './providers';
import { createTestApp, TestApp } from './test-app';

/** An app whose every provider is the fake provider on loopback, with the factory for its data. */
export interface AppWithFake {
  fake: FakeProvider;
  t: TestApp;
  f: Factory;
  /** closes the app, then the fake */
  close(): Promise<void>;
}

/**
 * Starts the fake provider and an app pointed at it (providerEnv's short timeouts, with `env` over
 * them); `listen` serves it on a loopback port too (for clients that need a real socket).
 */
export async function startAppWithFake(env: Record<string, string> = {}, opts: { listen?: boolean } = {}): Promise<AppWithFake> {
  const fake = await startFakeProvider();
  try {
    const t = await createTestApp(providerEnv(fake, env));
    if (opts.listen) await t.app.listen({ port: 0, host: '127.0.0.1' });
    return {
      fake,
      t,
      f: new Factory(t.app),
      close: async () => {
        try {
          await t.close();
        } finally {
          await fake.close(); // even when the app's close fails: a server left open keeps jest from exiting
        }
      },
    };
  } catch (err) {
    await fake.close();
    throw err;
  }
}

/**
 * The app with the fake provider for a whole test file: started before its tests, closed after
 * them. Its fields are there once the tests run; `tenantWithTeacher` makes a tenant and a teacher key.
 */
export function appWithFakeForSuite(env: Record<string, string> = {}): AppWithFake & { tenantWithTeacher(monthlyBudget?: string): Promise<{ tenant: TestTenant; teacher: string }> } {
  const suite = {
    async tenantWithTeacher(monthlyBudget = '100.00') {
      const tenant = await suite.f.newTenant({ monthlyBudget });
      return { tenant, teacher: (await suite.f.newKey(tenant, 'teacher')).key };
    },
  } as AppWithFake & { tenantWithTeacher(monthlyBudget?: string): Promise<{ tenant: TestTenant; teacher: string }> };
  beforeAll(async () => {
    Object.assign(suite, await startAppWithFake(env));
  });
  afterAll(async () => {
    await suite.close?.();
  });
  return suite;
}
