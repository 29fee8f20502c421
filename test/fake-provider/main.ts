/**
 * Runs the fake model provider as a standalone server, for benchmarks and manual tries:
 *
 *   node -r ts-node/register/transpile-only test/fake-provider/main.ts --port 4010 [--host 127.0.0.1] [--latency 50] [--batch-latency 2000]
 *
 * Script it over HTTP: POST /_fake/enqueue {dialect, steps, model?}, POST /_fake/latency {ms},
 * POST /_fake/context-window {model, tokens}, POST /_fake/batch-latency {ms},
 * POST /_fake/batch-failure {dialect, outcome}, POST /_fake/reset, GET /_fake/requests, GET /_fake/health.
 * Stops on SIGINT or SIGTERM.
 */
import { DIALECTS, startFakeProvider } from './fake-provider';

interface CliOptions {
  port: number;
  host: string;
  latencyMs: number;
  batchLatencyMs: number;
}

const USAGE =
  'usage: main.ts [--port N (default 4010)] [--host ADDRESS (default 127.0.0.1)] [--latency MS (default 0)] [--batch-latency MS (default 0)]';

function parseArgs(argv: string[]): CliOptions {
  const opts: CliOptions = { port: 4010, host: '127.0.0.1', latencyMs: 0, batchLatencyMs: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    // Both "--port 4010" and "--port=4010".
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`${name} needs a value`);
    switch (name) {
      case '--port':
        opts.port = integer(name, value, 0, 65535);
        break;
      case '--host':
        opts.host = value;
        break;
      case '--latency':
        opts.latencyMs = integer(name, value, 0, 3_600_000);
        break;
      case '--batch-latency':
        opts.batchLatencyMs = integer(name, value, 0, 86_400_000);
        break;
      default:
        throw new Error(`unknown option ${arg}`);
    }
  }
  return opts;
}

function integer(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}] (got "${value}")`);
  return n;
}

async function main(): Promise<void> {
  let opts: CliOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`fake provider: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exit(2);
  }
  const fake = await startFakeProvider({ port: opts.port, host: opts.host, latencyMs: opts.latencyMs, batchLatencyMs: opts.batchLatencyMs });
  const bases = DIALECTS.map((d) => `${d}: ${fake.baseUrl(d)}`).join(', ');
  console.log(`fake provider listening on ${fake.url} (${bases})`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    fake.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`fake provider: error while stopping on ${signal}: ${String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`fake provider: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
