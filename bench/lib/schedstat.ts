import * as fs from 'node:fs';

/** A reading of one process's main thread (Linux schedstat) and of the machine's CPU time. */
export interface SchedReading {
  at: number;
  cpuMs: number;
  waitMs: number;
  slices: number;
  idle: number;
  total: number;
}

/** The main thread's time on a core, its time ready but waiting for one (ms) and how often it was scheduled; the machine's CPU jiffies. */
export function readSched(pid: number): SchedReading {
  const [cpuNs, waitNs, slices] = fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { at: performance.now(), cpuMs: cpuNs / 1e6, waitMs: waitNs / 1e6, slices, idle: cpu[3] + cpu[4], total: cpu.reduce((a, b) => a + b, 0) };
}

/**
 * Between two readings: the share of the wall time the thread ran (user and kernel), the share it
 * was ready but another process held the core, how often it was scheduled a request, and how busy
 * the machine's cores were.
 */
export function schedBetween(a: SchedReading, b: SchedReading, requests: number) {
  const wallMs = b.at - a.at;
  return {
    onCpuPct: +((100 * (b.cpuMs - a.cpuMs)) / wallMs).toFixed(1),
    waitingForCpuPct: +((100 * (b.waitMs - a.waitMs)) / wallMs).toFixed(1),
    scheduledPerRequest: +((b.slices - a.slices) / requests).toFixed(2),
    machineBusyPct: +(100 * (1 - (b.idle - a.idle) / (b.total - a.total))).toFixed(1),
  };
}
