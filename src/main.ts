import 'reflect-metadata';
import { Logger } from 'nestjs-pino';
import { createApp } from './app.factory';
import { collectGarbage } from './common/collect-garbage';
import { startFailureLine } from './start-failure';
import { loadConfig } from './config/app-config';
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
  // What the start left behind goes now, not when the heap next fills (see collectGarbage).
  collectGarbage();
}

main().catch((err: unknown) => {
  process.stderr.write(`${startFailureLine(err)}\n`);
  process.exit(1);
});
