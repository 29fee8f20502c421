import * as fs from 'node:fs';
import { execSync } from 'node:child_process';

const TICK = 100; // clock ticks per second on Linux

/** A process's name and the fields of /proc/<pid>/stat after it (utime is [11]), or null once it is gone. */
function procStat(pid: number | string): { comm: string; f: string[] } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const end = stat.lastIndexOf(')');
    return { comm: stat.slice(stat.indexOf('(') + 1, end), f: stat.slice(end + 2).split(' ') };
  } catch {
    return null;
  }
}

/** Clock ticks of a process's own CPU (utime + stime) and of its children that have ended (cutime + cstime). */
function ticksOf(f: string[], reaped: boolean): number {
  return Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0);
}

/** The machine's CPU time so far, all cores, in clock ticks: idle (with I/O wait) and in all. */
function machineTicks(): { idle: number; total: number } {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: cpu[3] + cpu[4], total: cpu.reduce((a, b) => a + b, 0) };
}

/**
 * A process's CPU time so far, all its threads (utime + stime), in seconds; with `reaped`, also
 * that of its children that have ended (cutime + cstime); 0 once it is gone.
 */
export function cpuOf(pid: number, reaped = false): number {
  const p = procStat(pid);
  return p ? ticksOf(p.f, reaped) / TICK : 0;
}

/**
 * The CPU time so far of PostgreSQL's processes (backends and the server's own), in seconds, the
 * backends that have ended included (the server's reaped children), so a connection the pool
 * closes during a run does not take its CPU time out of the sum.
 */
export function postgresCpu(): number {
  const pids = execSync(`pgrep -f '^postgres' || true`).toString().trim().split('\n').filter(Boolean).map(Number);
  return pids.reduce((a, p) => a + cpuOf(p, true), 0);
}

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
  return { at: performance.now(), cpuMs: cpuNs / 1e6, waitMs: waitNs / 1e6, slices, ...machineTicks() };
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

/** A reading of the machine's CPU time and of the part taken by processes of the given names (jiffies). */
export interface ShareReading {
  total: number;
  busy: number;
  named: number;
}

/**
 * The machine's CPU time so far (all cores: busy, and in all), and the part of it taken by the
 * processes whose name is one of `names` (their threads, and their children already reaped, such
 * as PostgreSQL backends that have ended).
 */
export function readShare(names: string[]): ShareReading {
  const { idle, total } = machineTicks();
  let named = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const p = procStat(pid);
    if (p && names.includes(p.comm)) named += ticksOf(p.f, true);
  }
  return { total, busy: total - idle, named };
}

/**
 * Between two readings, in % of the machine (all cores): how busy it was, and how much of that the
 * processes not named took (on this machine: the other services it runs, the kernel's own threads).
 * A process of another name that started and ended in between counts as not named.
 */
export function shareBetween(a: ShareReading, b: ShareReading): { busyPct: number; othersPct: number } {
  const total = b.total - a.total;
  const busy = b.busy - a.busy;
  return { busyPct: +((100 * busy) / total).toFixed(1), othersPct: +((100 * Math.max(0, busy - (b.named - a.named))) / total).toFixed(1) };
}
