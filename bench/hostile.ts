/**
 * Hostile input through the real HTTP API: each input of test/support/hostile-inputs.ts is sent as
 * a chat message (POST /v1/chat/completions) and as an essay (POST /v1/essays, then graded by the
 * service's workers), with a teacher key. The provider is bench/lib/quick-provider.ts (it answers
 * at once and does not tokenize: the full fake provider's tokenizer is itself quadratic on some of
 * these inputs, and the subject here is the service). While each request runs (and, for an essay, until it is graded), this process asks
 * for /health every 5 ms: the longest /health answer is how long the service kept everyone else
 * waiting. The service's own measure, prom-client's `nodejs_eventloop_lag_max_seconds` (reset at
 * every scrape), is read from /metrics before and after. Essays over 20,000 characters are refused
 * (413): those rows show the refusal.
 *
 *   npm run bench:hostile
 */
import { benignText, hostileInputs } from '../test/support/hostile-inputs';
import { commit, dropDatabase, ensureBuilt, freshDatabase, machine, newTenant, OPERATOR, runMain, sleep, startService } from './lib/harness';
import { startQuickProvider } from './lib/quick-provider';

export interface RouteMeasure {
  status: number;
  /** the request's own latency */
  requestMs: number;
  /** essays: from the request to a final status (graded, needs_review, failed); null when refused */
  doneMs: number | null;
  /** essays: the final status, or why there is none */
  outcome: string | null;
  /** /health answers while this ran: how many, the longest, the 99th percentile */
  healthSamples: number;
  healthMaxMs: number;
  healthP99Ms: number;
  /** the service's own event-loop lag maximum over the same time (prom-client) */
  eventLoopLagMaxMs: number | null;
}

export interface HostileRow {
  input: string;
  chars: number;
  chat: RouteMeasure;
  essay: RouteMeasure;
}

export interface HostileResult {
  command: string;
  date: string;
  commit: string;
  machine: Record<string, string | number>;
  healthPollMs: number;
  /** a row fails when the service's event loop (or /health) was held this long */
  limitMs: number;
  rows: HostileRow[];
  worst: { input: string; route: 'chat' | 'essay'; healthMaxMs: number; eventLoopLagMaxMs: number | null };
  passed: boolean;
}

const HEALTH_POLL_MS = 5;
const TERMINAL = new Set(['graded', 'failed', 'needs_review']);

/** Asks for /health every few milliseconds until stopped; returns the latencies. */
function pollHealth(url: string): { stop(): Promise<number[]> } {
  const samples: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const res = await fetch(`${url}/health`);
        await res.arrayBuffer();
      } catch {
        /* counted by its latency */
      }
      samples.push(performance.now() - t0);
      await sleep(HEALTH_POLL_MS);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

async function eventLoopLagMaxMs(url: string): Promise<number | null> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR}` } });
  const text = await res.text();
  const m = /^inkstone_nodejs_eventloop_lag_max_seconds\s+([0-9.eE+-]+)/m.exec(text);
  return m ? Math.round(Number(m[1]) * 1000 * 10) / 10 : null;
}

function p99(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)];
}

const round = (x: number) => Math.round(x * 10) / 10;

async function measure(serviceUrl: string, send: () => Promise<Response>, done?: (res: Response, body: any) => Promise<string | null>): Promise<RouteMeasure> {
  await eventLoopLagMaxMs(serviceUrl); // resets the service's maximum
  const poller = pollHealth(serviceUrl);
  const t0 = performance.now();
  let status = 0;
  let requestMs = 0;
  let doneMs: number | null = null;
  let outcome: string | null = null;
  try {
    const res = await send();
    const text = await res.text();
    requestMs = performance.now() - t0;
    status = res.status;
    if (done) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      outcome = await done(res, body);
      if (outcome && TERMINAL.has(outcome)) doneMs = performance.now() - t0;
    }
  } catch (err) {
    outcome = `error: ${(err as Error).message}`;
  }
  const samples = await poller.stop();
  const lag = await eventLoopLagMaxMs(serviceUrl);
  return {
    status,
    requestMs: round(requestMs),
    doneMs: doneMs === null ? null : round(doneMs),
    outcome,
    healthSamples: samples.length,
    healthMaxMs: round(Math.max(0, ...samples)),
    healthP99Ms: round(p99(samples)),
    eventLoopLagMaxMs: lag,
  };
}

export async function runHostile(): Promise<HostileResult> {
  ensureBuilt();
  const dbName = 'inkstone_bench_hostile';
  const databaseUrl = await freshDatabase(dbName);
  const fake = await startQuickProvider();
  const service = await startService({
    DEEPSEEK_API_KEY: 'bench',
    DEEPSEEK_BASE_URL: `${fake.url}/deepseek`,
    DATABASE_URL: databaseUrl,
    LLM_STANDARD_MODELS: 'deepseek:deepseek-flash',
    WORKER_POLL_MS: '50',
  });
  try {
    const tenant = await newTenant(service.url);
    const auth = { authorization: `Bearer ${tenant.teacherKey}`, 'content-type': 'application/json' };
    const inputs = [
      { name: 'benign essay text (reference)', text: benignText(20_000) },
      ...hostileInputs(20_000),
      { name: 'spaces (80,000)', text: ' '.repeat(79_999) + 'x' },
    ];
    // Warm-up: connection pools, JIT.
    for (let i = 0; i < 3; i++) {
      await fetch(`${service.url}/v1/chat/completions`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: `warm-up ${i}` }], max_tokens: 32 }),
      }).then((r) => r.text());
    }
    const rows: HostileRow[] = [];
    for (const [i, input] of inputs.entries()) {
      process.stdout.write(`hostile: ${input.name}…\n`);
      const chat = await measure(service.url, () =>
        fetch(`${service.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { ...auth, 'cache-control': 'no-cache' },
          body: JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: input.text }], max_tokens: 64 }),
        }),
      );
      await sleep(100);
      const essay = await measure(
        service.url,
        () => fetch(`${service.url}/v1/essays`, { method: 'POST', headers: auth, body: JSON.stringify({ text: input.text, title: input.text.slice(0, 100), studentRef: `hostile-${i}` }) }),
        async (res, body) => {
          if (res.status !== 202 || !body?.id) return null;
          const until = Date.now() + 60_000;
          while (Date.now() < until) {
            const view = await fetch(`${service.url}/v1/essays/${body.id}`, { headers: auth }).then((r) => r.json() as Promise<{ status: string }>);
            if (TERMINAL.has(view.status)) return view.status;
            await sleep(20);
          }
          return 'not graded within 60 s';
        },
      );
      rows.push({ input: input.name, chars: input.text.length, chat, essay });
      await sleep(100);
    }
    const limitMs = 1000;
    const worstOf = (route: 'chat' | 'essay') =>
      rows.map((r) => ({ input: r.input, route, healthMaxMs: r[route].healthMaxMs, eventLoopLagMaxMs: r[route].eventLoopLagMaxMs }));
    const all = [...worstOf('chat'), ...worstOf('essay')];
    const worst = all.reduce((a, b) => (Math.max(b.healthMaxMs, b.eventLoopLagMaxMs ?? 0) > Math.max(a.healthMaxMs, a.eventLoopLagMaxMs ?? 0) ? b : a));
    return {
      command: 'npm run bench:hostile',
      date: new Date().toISOString().slice(0, 10),
      commit: commit(),
      machine: machine(),
      healthPollMs: HEALTH_POLL_MS,
      limitMs,
      rows,
      worst,
      passed: all.every((x) => x.healthMaxMs < limitMs && (x.eventLoopLagMaxMs ?? 0) < limitMs) && rows.every((r) => r.essay.outcome !== 'not graded within 60 s'),
    };
  } finally {
    await service.stop();
    await fake.stop();
    await dropDatabase(dbName);
  }
}

if (require.main === module) runMain('hostile.json', runHostile, (r) => r.passed);
