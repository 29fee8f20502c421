/**
 * What a service run with `--trace-gc` logged about its garbage collections, read from its output
 * (the part of it over a measured run). Lines look like
 * `[pid:addr]  4336 ms: Mark-Compact 86.9 (116.0) -> 45.6 (115.7) MB, 3.92 / 0.15 ms  (+ 11.9 ms in 140 steps since start of marking, …)`
 * and `… ms: Scavenge 40.1 (52.3) -> 27.8 (52.3) MB, 1.83 / 0.00 ms …`.
 */
export interface GcTrace {
  /** the collection lines themselves, in order */
  lines: string[];
  scavenges: number;
  markCompacts: number;
  /** each collection's pause on the main thread (ms) */
  pausesMs: number[];
  /** when each mark-compact ran, in ms since the service started */
  markCompactAtMs: number[];
  /** the old generation's size after each mark-compact (MB): what was live */
  liveAfterMarkCompactMb: number[];
  /** the incremental marking each mark-compact did before its pause (ms, on the main thread) */
  markingStepsMs: number[];
}

export function readGcTrace(output: string): GcTrace {
  const lines = output.split('\n').filter((l) => /Mark-Compact|Scavenge/.test(l));
  const mc = lines.filter((l) => /Mark-Compact/.test(l));
  const num = (re: RegExp, l: string) => Number(re.exec(l)?.[1] ?? NaN);
  return {
    lines,
    scavenges: lines.length - mc.length,
    markCompacts: mc.length,
    // "…, 5.11 / 0.07 ms": the pause on the main thread
    pausesMs: lines.map((l) => num(/([\d.]+) \/ [\d.]+ ms/, l) || 0),
    markCompactAtMs: mc.map((l) => num(/\s(\d+) ms: /, l)),
    liveAfterMarkCompactMb: mc.map((l) => num(/-> ([\d.]+) \(/, l)),
    markingStepsMs: mc.map((l) => num(/\(\+ ([\d.]+) ms in \d+ steps/, l) || 0),
  };
}
