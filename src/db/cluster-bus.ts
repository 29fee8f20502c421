import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Client } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import { loggableError } from '../common/error-rendering';
import { AppConfig, CONFIG } from '../config/app-config';
import type { DatabaseConnection } from './database';

/** The PostgreSQL channel every instance listens on. */
export const BUS_CHANNEL = 'inkstone_bus';
/** NOTIFY payloads must stay under 8,000 bytes: messages are sent in batches below that. */
const MAX_PAYLOAD = 7_000;
const FLUSH_MS = 5;
const PROBE_MS = 2_000;
/** Probes sent at start before the bus gives up on delivery between connections. */
const PROBES = 3;

/** Every bus of this process (several app instances in one process: tests, the embedded database). */
const IN_PROCESS = new Set<ClusterBus>();

interface Envelope {
  /** the instance that sent the batch */
  o: string;
  /** [topic, payload] pairs */
  m: Array<[string, unknown]>;
}

/**
 * Events every instance must see within a second: an essay's status changed (SSE streams, idle
 * workers), a key was revoked, a tenant's settings or limits changed. Published here, delivered
 * at once to this instance's subscribers and, through PostgreSQL LISTEN/NOTIFY, to every other
 * instance's. Messages are small (ids, never essay text) and batched into one NOTIFY every few
 * milliseconds. At start the bus checks that the server delivers a notification to its listening
 * connection; where it does not (the embedded PostgreSQL, PGlite, is one session shared by every
 * connection; a pooler in transaction mode drops LISTEN), it shares messages between the instances
 * of this process only, which is all there can be on one PGlite.
 *
 * Delivery is at most once: a listener connection that drops loses what was sent meanwhile, and
 * subscribers are told with the `resync` topic when it is back, so they can re-read what they show.
 * A connection can also go deaf without an error (a NAT or load balancer that forgets an idle
 * connection, a half-open socket): the listener sends TCP keepalives, and every BUS_HEARTBEAT_MS the
 * bus sends itself a probe; one not heard within PROBE_MS replaces the connection (and `resync`
 * follows), so a deaf instance stops trusting its caches within a heartbeat and a probe.
 */
@Injectable()
export class ClusterBus implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ClusterBus.name);
  readonly instanceId = randomUUID();
  private readonly emitter = new EventEmitter();
  private listener?: Client;
  /**
   * The connection the bus is on: the listener, or the one being connected to become it. Only its
   * events count: a late `end` of a connection already replaced would start a second listener.
   */
  private current?: Client;
  private pending: Array<[string, unknown]> = [];
  private pendingBytes = 0;
  private flushTimer?: NodeJS.Timeout;
  private closed = false;
  private reconnectDelayMs = 250;
  private reconnecting = false;
  /** true once the server has shown it delivers notifications between connections */
  private viaPostgres = false;
  private heartbeat?: NodeJS.Timeout;

  constructor(
    @Inject(CONFIG) private readonly config: AppConfig,
    private readonly ds: DataSource,
  ) {
    this.emitter.setMaxListeners(0);
    IN_PROCESS.add(this);
  }

  /** Do messages reach instances in other processes (through PostgreSQL)? */
  get clustered(): boolean {
    return this.viaPostgres;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.databaseUrl) return; // the embedded database: one process
    await this.listen();
    // Three probes before concluding the database does not deliver (a slow start lost one, and the
    // instance stopped hearing the others' revocations and sign-outs until it was restarted).
    let delivered = false;
    for (let i = 0; i < PROBES && this.listener && !delivered; i++) delivered = await this.probe();
    this.viaPostgres = delivered;
    if (delivered && this.config.busHeartbeatMs > 0) {
      this.heartbeat = setInterval(() => void this.checkHearing(), this.config.busHeartbeatMs);
      this.heartbeat.unref();
    }
    if (this.listener && !delivered) {
      // What other processes cannot be told: revocations and budget changes (until their caches run
      // out), and erasures — the answers of essays erased there stay in this process's in-memory
      // cache tier: set LLM_CACHE_MEMORY_MB=0 on such instances (README, Erasure).
      this.logger.warn({ msg: 'the database does not deliver notifications between connections: events reach the instances of this process only; with other processes on this database, set LLM_CACHE_MEMORY_MB=0' });
      const l = this.listener;
      this.listener = undefined;
      this.current = undefined;
      this.closed = true; // no reconnects
      await Promise.race([l.end().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())]);
      this.closed = false;
    }
  }

  /** Sends what is pending before `db`'s pool closes (DatabaseModule wires it). */
  sendBeforeClosing(db: DatabaseConnection): void {
    db.beforeClose(() => this.stop());
  }

  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  /** Last messages sent, the listening connection closed; once, whichever asks first. */
  private stopping?: Promise<void>;
  private stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.closed = true;
      IN_PROCESS.delete(this);
      clearInterval(this.heartbeat);
      if (this.flushTimer) clearTimeout(this.flushTimer);
      await this.flush();
      const l = this.listener;
      this.listener = undefined;
      this.current = undefined;
      if (l) await Promise.race([l.end().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())]);
    })();
    return this.stopping;
  }

  /** Sends a probe and waits for it on the listening connection. */
  private async probe(): Promise<boolean> {
    return (await this.sendProbe()) === true;
  }

  /**
   * A probe sent through the pool: heard on the listening connection within PROBE_MS of its
   * NOTIFY's commit, or not (null: it could not be sent). The wait starts once the statement is
   * done: a pool slow to lend a connection (the database busy) is not a deaf listener.
   */
  private async sendProbe(): Promise<boolean | null> {
    const id = randomUUID();
    let heard = false;
    let wake: (() => void) | undefined;
    this.probeWaiter = (probeId) => {
      if (probeId !== id) return;
      heard = true;
      wake?.();
    };
    try {
      await this.ds.query('SELECT pg_notify($1, $2)', [BUS_CHANNEL, JSON.stringify({ o: 'probe', probe: id, m: [] })]);
      if (!heard) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, PROBE_MS);
          t.unref();
          wake = () => (clearTimeout(t), resolve());
        });
      }
      return heard;
    } catch {
      return null;
    } finally {
      this.probeWaiter = undefined;
    }
  }

  /**
   * The heartbeat: a probe sent through the pool must come back on the listening connection. When
   * it does not (and the pool could send it: a database that is away is the reconnects' business),
   * the connection is deaf: it is dropped for a new one, and `resync` tells the subscribers that
   * they missed what was sent meanwhile.
   */
  private async checkHearing(): Promise<void> {
    const l = this.listener;
    if (!l || this.closed || this.reconnecting || this.probeWaiter) return;
    const heard = await this.sendProbe();
    if (heard !== false || this.closed || this.listener !== l) return;
    this.logger.warn({ msg: 'the bus listener heard nothing for a probe: replacing its connection (subscribers resync)' });
    // Its events no longer count (an `end` that comes late, from a half-open socket, would start
    // another listener beside the new one, and every message would arrive twice).
    l.removeAllListeners('end');
    l.removeAllListeners('notification');
    l.removeAllListeners('error');
    l.on('error', () => undefined);
    void l.end().catch(() => undefined);
    await this.reconnect(l);
  }

  private probeWaiter?: (probeId: string) => void;

  /** Delivers to this instance's subscribers now, and to the others' within milliseconds. */
  publish(topic: string, payload: unknown): void {
    if (!this.clustered) {
      // Every instance of this process, this one included.
      for (const bus of IN_PROCESS) bus.deliver(topic, payload);
      return;
    }
    this.deliver(topic, payload);
    if (this.closed) return;
    const size = JSON.stringify(payload).length + topic.length + 8;
    if (this.pendingBytes + size > MAX_PAYLOAD) void this.flush();
    this.pending.push([topic, payload]);
    this.pendingBytes += size;
    this.flushTimer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  /**
   * Publishes with a transaction (`m`): the other processes' instances are told by a NOTIFY sent in
   * it, which PostgreSQL delivers when, and only if, it commits, so the message cannot be lost
   * between the commit and a later send. The returned function delivers it to this process's
   * instances; call it after the commit. For what must reach every instance (an erasure).
   */
  async publishWith(m: EntityManager, topic: string, payload: unknown): Promise<() => void> {
    if (!this.clustered) return () => this.publish(topic, payload);
    const envelope: Envelope = { o: this.instanceId, m: [[topic, payload]] };
    await m.query('SELECT pg_notify($1, $2)', [BUS_CHANNEL, JSON.stringify(envelope)]);
    return () => this.deliver(topic, payload);
  }

  /** Subscribes to a topic; returns the unsubscribe function. */
  on<T>(topic: string, fn: (payload: T) => void): () => void {
    const handler = (p: T) => {
      try {
        fn(p);
      } catch (err) {
        this.logger.warn({ msg: 'a bus subscriber failed', topic, err: loggableError(err) });
      }
    };
    this.emitter.on(topic, handler);
    return () => this.emitter.off(topic, handler);
  }

  private deliver(topic: string, payload: unknown): void {
    // Only to subscribers: an EventEmitter throws on an `error` no one listens for.
    if (this.emitter.listenerCount(topic) > 0) this.emitter.emit(topic, payload);
  }

  /**
   * A notification on the bus's channel: an envelope of [topic, payload] pairs from another
   * instance, or a probe. Anything else (another version's shape during a rolling upgrade, a NOTIFY
   * by hand) is dropped with a warning: thrown in the listener's socket read, it stopped every
   * instance on the database at once.
   */
  private received(raw: string): void {
    let env: unknown;
    try {
      env = JSON.parse(raw);
    } catch {
      env = undefined;
    }
    const e = env as (Partial<Envelope> & { probe?: unknown }) | null | undefined;
    if (!e || typeof e !== 'object' || Array.isArray(e)) return this.dropped('not an object');
    if (typeof e.probe === 'string') return this.probeWaiter?.(e.probe);
    if (e.o === this.instanceId) return;
    if (!Array.isArray(e.m)) return this.dropped('no list of messages');
    for (const m of e.m as unknown[]) {
      if (Array.isArray(m) && typeof m[0] === 'string') this.deliver(m[0], m[1]);
      else this.dropped('a message that is not [topic, payload]');
    }
  }

  private dropped(why: string): void {
    this.logger.warn({ msg: 'a bus notification of an unknown shape was dropped', why });
  }

  private async flush(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (!this.pending.length) return;
    const batch: Envelope = { o: this.instanceId, m: this.pending };
    this.pending = [];
    this.pendingBytes = 0;
    try {
      await this.ds.query('SELECT pg_notify($1, $2)', [BUS_CHANNEL, JSON.stringify(batch)]);
    } catch (err) {
      this.logger.warn({ msg: 'could not notify the other instances', count: batch.m.length, err: loggableError(err) });
    }
  }

  private async listen(): Promise<void> {
    const client = new Client({ connectionString: this.config.databaseUrl, application_name: 'inkstone-bus', keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    client.on('notification', (n) => {
      if (n.channel !== BUS_CHANNEL || !n.payload) return;
      try {
        this.received(n.payload);
      } catch (err) {
        this.logger.warn({ msg: 'a bus notification could not be handled', err: loggableError(err) });
      }
    });
    client.on('error', (err) => {
      this.logger.warn({ msg: 'the bus listener connection failed', err: loggableError(err) });
      void this.reconnect(client);
    });
    client.on('end', () => void this.reconnect(client));
    this.current = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${BUS_CHANNEL}`);
      if (this.closed || this.current !== client) {
        // stopped (or given up on) while it connected
        await client.end().catch(() => undefined);
        return;
      }
      this.listener = client;
      this.reconnectDelayMs = 250;
    } catch (err) {
      this.logger.warn({ msg: 'could not listen for other instances; retrying', err: loggableError(err) });
      await client.end().catch(() => undefined);
      await this.reconnect(client);
    }
  }

  private async reconnect(dead: Client): Promise<void> {
    if (this.closed || this.reconnecting || dead !== this.current) return;
    this.reconnecting = true;
    this.listener = undefined;
    this.current = undefined;
    try {
      await new Promise((r) => setTimeout(r, this.reconnectDelayMs).unref());
      this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 10_000);
    } finally {
      this.reconnecting = false;
    }
    if (this.closed || this.current) return;
    await this.listen();
    if (this.listener) this.deliver('resync', {});
  }
}
