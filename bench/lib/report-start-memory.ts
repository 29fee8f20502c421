/** BENCHMARKS.md's section for `npm run bench:start-memory` (bench/results/start-memory.json). */

interface StartRun {
  store: 'embedded' | 'postgres';
  round: number;
  start: 'new' | 'restart';
  startMs: number;
  rssAtHealthMb: number;
  rssAfterSettleMb: number;
  peakRssMb: number;
}

export interface StartMemoryResult {
  at: string;
  commit: string;
  date: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string };
  nodeArgs: string[];
  settleMs: number;
  runs: StartRun[];
}

const range = (xs: number[]) => (Math.min(...xs) === Math.max(...xs) ? `${xs[0]}` : `${Math.min(...xs)}–${Math.max(...xs)}`);

export function renderStartMemory(r: StartMemoryResult): string {
  const rows = (['embedded', 'postgres'] as const).flatMap((store) =>
    (['new', 'restart'] as const).flatMap((start) => {
      const runs = r.runs.filter((x) => x.store === store && x.start === start);
      if (!runs.length) return [];
      const where = store === 'embedded' ? 'embedded (PGlite), the default' : 'external PostgreSQL (`DATABASE_URL`)';
      const how = start === 'new' ? 'a new data directory or database' : 'restarted on it';
      return [
        `| ${where} | ${how} | ${runs.length} | ${range(runs.map((x) => x.rssAfterSettleMb))} | ${range(runs.map((x) => x.peakRssMb))} | ${range(runs.map((x) => Math.round(x.startMs / 100) / 10))} |`,
      ];
    }),
  );
  return `## A new instance's memory (\`npm run bench:start-memory\`)

The built service with \`npm start\`'s flags (\`${r.nodeArgs.join(' ')}\`), started and stopped; its
resident memory read from \`/proc/<pid>/status\` ${r.settleMs} ms after \`/health\` first answered, and
its peak (VmHWM) then. Run ${r.date} at \`${r.commit}\` on ${r.machine.cpus} vCPU (${r.machine.cpuModel}), Node.js ${r.machine.node}.

| Database | Start | Runs | Resident (MB) | Peak (MB) | Until /health (s) |
|---|---|---|---|---|---|
${rows.join('\n')}

The peak of a first start on the embedded default is PGlite's \`initdb\`; the service then runs one
full collection once it listens (\`src/common/collect-garbage.ts\`), which gives most of it back.
`;
}
