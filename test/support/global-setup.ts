import { prepareTemplate } from './test-database';

export default async function globalSetup(): Promise<void> {
  process.env.INKSTONE_TEST_RUN = String(process.pid);
  await prepareTemplate(process.env.INKSTONE_TEST_RUN);
  // TypeORM keeps its entity metadata on the global object. Loaded here, outside the test files'
  // sandboxes, it put that store on this process's own global, and jest gives every test file run in
  // this process (in band) the globals it finds here: each file's entity classes were added to one
  // store that outlived the file, and with them the file's whole module registry (a CI run in band
  // reached its 4 GB heap limit). Each file gets a store of its own again.
  delete (globalThis as { typeormMetadataArgsStorage?: unknown }).typeormMetadataArgsStorage;
}
