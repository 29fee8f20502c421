import 'reflect-metadata';
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import pino from 'pino';
import { createApp } from './app.factory';
import { ConfigError, loadConfig } from './config/app-config';
import { erasuresInLog, reapplyErasures } from './grading/erasure-replay';
import { EssayErasure } from './grading/essay-erasure.service';

const USAGE = `Erases again the essays a service log says were erased: run it after restoring the database
from a backup taken before some erasures (they came back with it), with the same configuration
as the service (DATABASE_URL or INKSTONE_DATA_DIR, INKSTONE_ADMIN_TOKEN, INKSTONE_SECRET_KEY).

  npm run erasures:reapply -- [--since 2026-12-01T00:00:00Z] [LOG_FILE ...]

Reads each LOG_FILE (the service's JSON log lines; standard input when none is named) for
"essay erased" lines at or after --since (the backup's time), and erases each such essay that
is back. Prints what it did as JSON; exits 3 when some "essay erased" line could not be read
(the log must be the service's JSON lines, LOG_FORMAT=json), 2 when some essay was being graded
(run it again once their grading ends), 1 on an error.`;

async function* linesOf(files: string[]): AsyncGenerator<string> {
  const streams = files.length ? files.map((f) => fs.createReadStream(f)) : [process.stdin];
  for (const input of streams) yield* readline.createInterface({ input, crlfDelay: Infinity });
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let since: Date | undefined;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--since') {
      since = new Date(args[++i] ?? '');
      if (Number.isNaN(since.getTime())) throw new ConfigError("--since", "must be a time, e.g. 2026-12-01T00:00:00Z");
    } else files.push(args[i]);
  }
  const log = await erasuresInLog(linesOf(files), since);
  // The service's own modules, without its workers or its port: the erasure is the API's. Its log
  // lines go to standard error, so that standard output is the result alone.
  const app = await createApp(loadConfig({ ...process.env, WORKERS_ENABLED: 'false' }), { logDestination: pino.destination(2) });
  try {
    const result = await reapplyErasures(app.get(EssayErasure), log.erasures);
    process.stdout.write(`${JSON.stringify({ linesRead: log.lines, unreadableLines: log.unreadable, ...result }, null, 2)}\n`);
    if (log.unreadable) {
      // An erasure the log holds but not as JSON (LOG_FORMAT=pretty, a cut line): its essay is back, and must not pass unnoticed.
      process.stderr.write(`reapply-erasures: ${log.unreadable} "essay erased" line(s) could not be read as the service's JSON log lines (LOG_FORMAT=json): the essays they name were not erased again\n`);
      return 3;
    }
    return result.busy.length ? 2 : 0;
  } finally {
    await app.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(err instanceof ConfigError ? `reapply-erasures: ${err.message}\n` : `reapply-erasures: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
