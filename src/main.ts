import 'reflect-metadata';
import { Logger } from 'nestjs-pino';
import { createApp } from './app.factory';
import { ConfigError, loadConfig } from './config/app-config';
import { EmbeddedPostgresLockedError } from './db/embedded-postgres';

async function main(): Promise<void> {
  const config = loadConfig();
  const app = await createApp(config);
  app.enableShutdownHooks(['SIGINT', 'SIGTERM']);
  await app.listen({ port: config.port, host: config.host });
  app.get(Logger).log({ msg: 'Inkstone is listening', url: await app.getUrl(), docs: '/docs' }, 'Main');
}

main().catch((err: unknown) => {
  // A configuration problem is one line that names the variable; anything else gets its stack.
  if (err instanceof ConfigError) {
    process.stderr.write(`inkstone: configuration error: ${err.message}\n`);
  } else if (err instanceof EmbeddedPostgresLockedError) {
    process.stderr.write(`inkstone: ${err.message}\n`);
  } else {
    process.stderr.write(`inkstone: failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(1);
});
