import { prepareTemplate } from './test-database';

export default async function globalSetup(): Promise<void> {
  process.env.INKSTONE_TEST_RUN = String(process.pid);
  await prepareTemplate(process.env.INKSTONE_TEST_RUN);
}
