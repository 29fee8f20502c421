import 'reflect-metadata';
import { Logger } from 'nestjs-pino';
import { createApp } from './app.factory';
import { ConfigError, loadConfig } from './config/app-config';
import { EmbeddedPostgresLockedError } from './db/embedded-postgres';
import { resolveLlmModels } from './llm/llm-models';

async function main(): Promise<void> {
  const config = loadConfig();
  const models = resolveLlmModels(config.llm); // a bad catalog or tier stops here, in one line
  const app = await createApp(config, { models });
  const logger = app.get(Logger);
  // A graceful stop: stop taking requests, let workers finish or return their jobs, close the
  // database, then exit 0. A second signal exits at once.
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) process.exit(1);
      stopping = true;
      logger.log({ msg: 'stopping', signal }, 'Main');
      app
        .close()
        .then(() => process.exit(0))
        .catch((err: Error) => {
          process.stderr.write(`inkstone: error while stopping: ${err.stack}\n`);
          process.exit(1);
        });
    });
  }
  await app.listen({ port: config.port, host: config.host });
  logger.log({ msg: 'Inkstone is listening', url: await app.getUrl(), docs: '/docs' }, 'Main');
}

main().catch((err: unknown) => {
  // A configuration problem is one line that names the variable; anything else gets its stack.
  if (err instanceof ConfigError) {
    process.stderr.write(`inkstone: configuration error: ${err.message}\n`);
  } else if (err instanceof EmbeddedPostgresLockedError) {
    process.stderr.write(`inkstone: ${err.message}\n`);
  } else if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string') {
    // The network's or the database's own refusal (ECONNREFUSED, ENOTFOUND, a database that does
    // not exist, a password refused): its message says it all, in one line.
    process.stderr.write(`inkstone: failed to start: ${err.message} (${(err as NodeJS.ErrnoException).code})\n`);
  } else {
    process.stderr.write(`inkstone: failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(1);
});
