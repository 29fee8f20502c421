import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { loggableError } from '../common/error-rendering';
import type { BatchedGuard, BatchRef } from '../billing/budget.service';
import type { LlmConfig } from '../config/app-config';
import type { EnabledProvider } from './llm-models';
import type { CatalogModel } from './catalog';
import { BatchObject, ProviderClient, readCompletion } from './provider-client';
import type { TrackedUpload } from './provider-uploads.repository';
import type { DialectAdapter } from './providers';
import { ChatParams, Completion, ProviderError } from './types';

/** The guard of a call sent in a batch, to name the batch on (a job's call, paid at most once). */
export type BatchGuardRef = Omit<BatchedGuard, 'line'>;

/** What the collector keeps in the database: which guarded calls wait in which batch (BudgetService). */
export interface BatchGuards {
  markUploaded(provider: string, fileId: string, guards: BatchedGuard[]): Promise<number>;
  markBatched(provider: string, batchId: string, guards: BatchedGuard[]): Promise<number>;
  othersAwaitingBatch(batchId: string, fileId: string | null, tokens: string[]): Promise<number>;
}

/**
 * Where the collector writes down each upload until it and its batch's answers are deleted at the
 * provider (ProviderUploadsRepository): what a stopped process, a batch given up or a failed
 * delete leaves there is found again by the sweep (sweepUploads).
 */
export interface UploadsBook {
  track(provider: string, name: string, dueInMs: number): Promise<void>;
  uploaded(provider: string, name: string, fileId: string): Promise<void>;
  nameBatch(provider: string, fileId: string, batchId: string): Promise<void>;
  dueIn(provider: string, name: string, ms: number, batchId?: string): Promise<void>;
  forget(provider: string, fileId: string): Promise<void>;
  forgetName(provider: string, name: string): Promise<void>;
  claimDue(limit: number, holdMs: number): Promise<TrackedUpload[]>;
}

/** A provider the sweep can call, by the name an upload was written down with (undefined: no key here now). */
export type ProviderByName = (name: string) => { provider: EnabledProvider; adapter: DialectAdapter } | undefined;

/** Past a batch's longest wait, how long its sender has to read and delete its files before the sweep may. */
const UPLOAD_GRACE_MS = 10 * 60_000;
/** Uploads swept at most at once, per instance. */
const SWEEP_BATCH = 20;

/** Where a call taken over waits: its batch, or (its sender stopped before naming the batch) the upload the batch was made from. */
export type AdoptedWhere = Pick<BatchRef, 'batchId' | 'fileId' | 'line' | 'guardedAt'>;

/** How far back a batch made from an upload is looked for, before its guard was taken (clocks apart). */
const CLOCK_SLACK_MS = 60_000;

interface Entry {
  customId: string;
  body?: Record<string, unknown>;
  guard?: BatchGuardRef;
  resolve(c: Completion): void;
  reject(e: ProviderError): void;
}

interface Pending {
  provider: EnabledProvider;
  adapter: DialectAdapter;
  entries: Entry[];
  timer?: NodeJS.Timeout;
}

/** A batch another process sent, waited for here by the calls taken over from it (adopt). */
interface Adopted extends Pending {
  /** its answers once read: a call taken over after that is answered from them */
  results?: Map<string, LineResult>;
  /** why it failed as a whole: a call taken over after that fails the same way */
  failure?: string;
  /** the guards' tokens of every call answered from it */
  tokens: string[];
}

type LineResult = { status: number; body: unknown; error?: unknown };

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
/** Ended, or ending at the provider's side ('cancelling'): not to be cancelled again. */
const ENDING = new Set([...TERMINAL, 'cancelling']);
/** How often a batch given up on is read while it is cancelling (see cancel()). */
const CANCEL_POLL_MS = 2_000;

/**
 * Calls that can wait (paid deep reviews) go to the provider's Batch API, at its batch price
 * (half, for DashScope, OpenAI and Zhipu). Requests for one model are collected for
 * LLM_BATCH_WINDOW_MS (or until LLM_BATCH_MAX_REQUESTS), uploaded as one JSONL file, and the batch
 * is polled every LLM_BATCH_POLL_MS until it finishes or LLM_BATCH_MAX_WAIT_MS has passed. Each
 * caller gets its own line's answer, or its own error; a batch that fails as a whole fails every
 * line with `batch_failed`, and the gateway then makes those calls in real time.
 *
 * Calls of jobs (guarded: paid at most once) have the batch's upload named on their guards before
 * the batch is created, and the batch itself as soon as the provider has created it. When the
 * service stops while such a batch runs, the batch is handed over, not cancelled: its calls end
 * with `batch_handed_over` (nothing settled; their guards and reservations stay), and each job's
 * retry, on any instance, takes its call over and waits for the same batch (adopt). A killed
 * process leaves the same state behind; one killed before it named the batch leaves the upload,
 * and the retry finds the batch made from it in the provider's list (or, finding none, knows the
 * call was never sent). A batch's files are deleted once read, unless a call taken over elsewhere
 * still waits to read its line. Every upload is written down (UploadsBook) before its batch is
 * created and struck off once its files are deleted; what is left at a provider is found by the
 * sweep (sweepUploads).
 *
 * A batch given up before it ended (LLM_BATCH_MAX_WAIT_MS passed since it was created, or the
 * service is stopping and some of its calls are not a job's) is cancelled at the provider, so that
 * what it has not run yet is neither run nor billed while its calls are made again in real time.
 * An expired batch, or one cancelled, answers the lines it ran from its output file (ranPartly).
 * On a stop, the calls collected but not sent yet are not uploaded at all: they fail at once
 * (`batch_failed`), and the waiting batches stop being polled.
 */
export class BatchCollector {
  private readonly logger = new Logger(BatchCollector.name);
  private readonly pending = new Map<string, Pending>();
  private readonly adopted = new Map<string, Adopted>();
  /** The batches being looked for by their uploads (adopt): one look an upload. */
  private readonly locating = new Map<string, Promise<string | null>>();
  private readonly running = new Set<Promise<void>>();
  private closed = false;
  /** The batches being polled now: whether each is named on its calls' guards, and whether handOver() asked for it. */
  private readonly polling = new Set<{ named: boolean; handOver: boolean }>();
  /** The batches' polling waits, each ended at once when the collector closes. */
  private readonly waits = new Set<() => void>();

  constructor(
    private readonly client: ProviderClient,
    private readonly cfg: LlmConfig,
    private readonly guards?: BatchGuards,
    private readonly uploads?: UploadsBook,
  ) {}

  submit(provider: EnabledProvider, adapter: DialectAdapter, model: CatalogModel, params: ChatParams, guard?: BatchGuardRef): Promise<Completion> {
    if (this.closed) return Promise.reject(new ProviderError('retryable', 'batch_failed', 'shutting down'));
    return new Promise<Completion>((resolve, reject) => {
      let p = this.pending.get(model.key);
      if (!p) {
        p = { provider, adapter, entries: [] };
        this.pending.set(model.key, p);
        p.timer = setTimeout(() => this.flush(model.key), this.cfg.batchWindowMs);
        p.timer.unref();
      }
      p.entries.push({ customId: randomUUID(), body: this.client.batchBody(adapter, model, params), guard, resolve, reject });
      if (p.entries.length >= this.cfg.batchMaxRequests) this.flush(model.key);
    });
  }

  /**
   * Waits for the answer of a call another process sent in a batch (`where`) and this one took over
   * with its guard. When the sender named only the batch's upload, the batch made from it is looked
   * for first and named on the guard; none made means the call was never sent: it fails
   * (`batch_failed`), to be made in real time, and the upload is deleted.
   */
  async adopt(provider: EnabledProvider, adapter: DialectAdapter, where: AdoptedWhere, guard: BatchGuardRef): Promise<Completion> {
    let batchId = where.batchId;
    if (batchId === null) {
      if (this.closed) throw new ProviderError('retryable', 'batch_handed_over', 'the service is stopping; the call waits for the job\'s retry');
      const fileId = where.fileId!;
      batchId = await this.locate(provider, adapter, fileId, where.guardedAt);
      if (batchId === null) throw new ProviderError('retryable', 'batch_failed', `no batch was made from upload ${fileId}: the call was never sent`);
      try {
        await this.guards?.markBatched(provider.name, batchId, [{ ...guard, line: where.line }]);
      } catch (err) {
        // Its upload stays named: the batch's files are kept for it all the same (othersAwaitingBatch).
        this.logger.warn({ msg: 'could not name a batch found by its upload', batchId, err: loggableError(err) });
      }
    }
    return this.waitFor(provider, adapter, batchId, where.line, guard.token);
  }

  /**
   * The id of the batch made from `fileId` (created after `guardedAt`), or null when there is none;
   * the upload is then deleted. A provider's list of batches may not show a batch made a moment
   * ago (OpenAI's lists are eventually consistent), and a batch taken for "none made" would run,
   * and be billed, beside the call made again in real time: so "none" is concluded only when a
   * second look, `batchListSettleMs` after the first, does not find it either.
   */
  private locate(provider: EnabledProvider, adapter: DialectAdapter, fileId: string, guardedAt: number): Promise<string | null> {
    let look = this.locating.get(fileId);
    if (!look) {
      look = (async () => {
        const find = () =>
          this.again('the batch made from an upload could not be looked for', { fileId }, () =>
            this.client.findBatchByFile(provider, adapter, fileId, guardedAt - CLOCK_SLACK_MS),
          );
        let found = await find();
        if (!found && this.cfg.batchListSettleMs > 0) {
          await this.pause(this.cfg.batchListSettleMs);
          if (this.closed) throw new ProviderError('retryable', 'batch_handed_over', "the service is stopping; the call waits for the job's retry");
          found = await find();
        }
        this.logger.log({ msg: found ? 'a batch taken over found by its upload' : 'no batch was made from an upload taken over', fileId, batchId: found?.id });
        if (!found && (await this.deleteFile(provider, adapter, fileId, { fileId }))) await this.strikeOff(provider.name, { fileId });
        return found?.id ?? null;
      })().finally(() => this.locating.delete(fileId));
      this.locating.set(fileId, look);
    }
    return look;
  }

  /**
   * Waits for the answer of a call another process sent in `batchId` (line `line`) and this one
   * took over with its guard (`token`). Calls taken over from one batch share one poll. On a stop
   * it ends with `batch_handed_over` again; past the batch's LLM_BATCH_MAX_WAIT_MS the batch is
   * cancelled and the call fails (`batch_failed`), to be made in real time.
   */
  private waitFor(provider: EnabledProvider, adapter: DialectAdapter, batchId: string, line: string, token: string): Promise<Completion> {
    if (this.closed) return Promise.reject(handedOver(batchId));
    return new Promise<Completion>((resolve, reject) => {
      const entry: Entry = { customId: line, resolve, reject };
      let a = this.adopted.get(batchId);
      if (a?.results) {
        a.tokens.push(token);
        return answer([entry], a.results, batchId, a.adapter);
      }
      if (a?.failure) return failAll([entry], a.failure);
      if (!a) {
        const fresh: Adopted = { provider, adapter, entries: [], tokens: [] };
        this.adopted.set(batchId, fresh);
        const run = this.runAdopted(batchId, fresh).finally(() => {
          this.adopted.delete(batchId);
          this.running.delete(run);
        });
        this.running.add(run);
        a = fresh;
      }
      a.tokens.push(token);
      a.entries.push(entry);
    });
  }

  private flush(key: string): void {
    const p = this.pending.get(key);
    if (!p) return;
    this.pending.delete(key);
    if (p.timer) clearTimeout(p.timer);
    const run = this.run(key, p).finally(() => this.running.delete(run));
    this.running.add(run);
  }

  private async run(key: string, p: Pending): Promise<void> {
    let batch: BatchObject | undefined;
    // The upload's file name, written down before it is sent: an upload whose answer is lost is found by it.
    const name = `inkstone-${randomUUID()}.jsonl`;
    let tracked = false;
    let fileId: string | undefined;
    let kept = false;
    let gone = false;
    try {
      const jsonl = p.entries.map((e) => JSON.stringify({ custom_id: e.customId, method: 'POST', url: '/v1/chat/completions', body: e.body })).join('\n');
      const uploadedAt = Date.now();
      if (!(tracked = await this.track(key, p, name))) return failAll(p.entries, "the batch's upload could not be written down: not sent");
      fileId = await this.client.uploadBatchFile(p.provider, p.adapter, jsonl, name);
      await this.uploads?.uploaded(p.provider.name, name, fileId).catch((err: unknown) => {
        this.logger.warn({ msg: "could not write down an upload's id: the sweep looks for it by its name", model: key, fileId, err: loggableError(err) });
      });
      if (!(await this.nameUpload(key, p, fileId))) {
        // Its calls' guards and reservations would run out while the batch ran: not sent.
        gone = await this.deleteFile(p.provider, p.adapter, fileId, { fileId });
        return failAll(p.entries, "the batch's upload could not be named on its calls: not sent");
      }
      batch = await this.createBatch(key, p, fileId, uploadedAt);
      this.logger.log({ msg: 'batch submitted', model: key, batchId: batch.id, requests: p.entries.length });
      await this.uploads?.nameBatch(p.provider.name, fileId, batch.id).catch((err: unknown) => {
        this.logger.warn({ msg: 'could not write down the batch made from an upload: the sweep looks for it by its upload', model: key, batchId: batch!.id, err: loggableError(err) });
      });
      const handover = await this.nameOnGuards(key, p, batch.id);
      const polled = await this.poll(p, batch, Date.now() + this.cfg.batchMaxWaitMs, handover);
      batch = polled.batch;
      if (polled.ended === 'closed' && handover) {
        kept = true;
        this.logger.warn({ msg: 'batch handed over', model: key, batchId: batch.id, requests: p.entries.length });
        for (const e of p.entries) e.reject(handedOver(batch.id));
        return;
      }
      if (polled.ended !== 'done') {
        const why = polled.ended === 'closed' ? 'the service is stopping' : `it did not finish within ${this.cfg.batchMaxWaitMs} ms`;
        batch = await this.cancel(key, p, batch, why);
        if (ranPartly(batch)) return answer(p.entries, await this.results(p, outputOnly(batch)), batch.id, p.adapter);
        return failAll(p.entries, `batch ${batch.id} given up: ${why}`);
      }
      if (ranPartly(batch)) return answer(p.entries, await this.results(p, outputOnly(batch)), batch.id, p.adapter);
      if (batch.status !== 'completed') return failAll(p.entries, `batch ${batch.id} ended ${batch.status}`);
      answer(p.entries, await this.results(p, batch), batch.id, p.adapter);
    } catch (err) {
      const why = err instanceof ProviderError ? `${err.reason}: ${err.message}` : (err as Error).message;
      this.logger.warn({ msg: 'batch failed', model: key, err: loggableError(err) });
      failAll(p.entries, why);
    } finally {
      // A batch given up before it ended (its wait ran out, or a shutdown) keeps running at the
      // provider until it is cancelled: its upload is deleted now, its results by the sweep once it
      // has ended. One handed over keeps its files for the calls that will wait for it.
      if (batch && !kept) {
        const tokens = p.entries.flatMap((e) => (e.guard ? [e.guard.token] : []));
        const done = TERMINAL.has(batch.status);
        const cleaned = await this.cleanUp(key, p, done ? batch : { ...batch, output_file_id: null, error_file_id: null }, tokens);
        gone = done && cleaned === 'deleted';
        // Given up while it ran, or its files could not all be deleted: the sweep deletes its answers once it has ended.
        if (!done || cleaned === 'failed') await this.dueSoon(p.provider.name, name, batch.id);
      } else if (tracked && !batch && !gone) {
        // No batch known from the upload (the upload's answer or the batch's creation failed or timed
        // out): the sweep looks for them, and deletes what the provider stored.
        await this.dueSoon(p.provider.name, name);
      }
      if (tracked && gone) await this.strikeOff(p.provider.name, { name });
    }
  }

  /** Writes the upload down by its file name before it is sent (UploadsBook.track); false when it could not be (a database error, logged). */
  private async track(key: string, p: Pending, name: string): Promise<boolean> {
    if (!this.uploads) return true;
    try {
      await this.uploads.track(p.provider.name, name, this.cfg.batchMaxWaitMs + UPLOAD_GRACE_MS);
      return true;
    } catch (err) {
      this.logger.warn({ msg: 'could not write an upload down: not sent', model: key, err: loggableError(err) });
      return false;
    }
  }

  /** Strikes off an upload whose files are deleted, by the provider's id for it or by its file name (a failure is logged: the sweep finds it gone). */
  private async strikeOff(provider: string, upload: { fileId: string } | { name: string }): Promise<void> {
    const done = 'fileId' in upload ? this.uploads?.forget(provider, upload.fileId) : this.uploads?.forgetName(provider, upload.name);
    await done?.catch((err: unknown) => this.logger.warn({ msg: 'could not strike off a deleted upload', ...upload, err: loggableError(err) }));
  }

  /** The sweep looks at the upload (by its file name) at its next pass after one poll interval. */
  private async dueSoon(provider: string, name: string, batchId?: string): Promise<void> {
    await this.uploads?.dueIn(provider, name, this.cfg.batchPollMs, batchId).catch((err: unknown) => this.logger.warn({ msg: 'could not mark an upload for the sweep', batchId, err: loggableError(err) }));
  }

  /**
   * Names the batch's upload on its calls' guards, before the batch is created: if this process
   * dies before it names the batch, the jobs' retries find the batch by its upload. Naming it also
   * makes the guards and reservations last as long as the batch may; until then they last the
   * collection window only, so a process killed while it collected leaves guards that expire soon.
   * False when it could not be named (a database error, logged): the batch is not created.
   */
  private async nameUpload(key: string, p: Pending, fileId: string): Promise<boolean> {
    const guards = this.guardsOf(p);
    if (!this.guards || guards.length === 0) return true;
    try {
      await this.guards.markUploaded(p.provider.name, fileId, guards);
      return true;
    } catch (err) {
      this.logger.warn({ msg: "could not name a batch's upload on its calls: not sent", model: key, fileId, err: loggableError(err) });
      return false;
    }
  }

  private guardsOf(p: Pending): BatchedGuard[] {
    return p.entries.flatMap((e) => (e.guard ? [{ ...e.guard, line: e.customId }] : []));
  }

  /**
   * Names the batch on its calls' guards. True when every call is a job's and was named, so the
   * batch can be handed over on a stop; false when some cannot be (it is cancelled then, as before).
   */
  private async nameOnGuards(key: string, p: Pending, batchId: string): Promise<boolean> {
    const guards = this.guardsOf(p);
    if (!this.guards || guards.length === 0) return false;
    try {
      const named = await this.guards.markBatched(p.provider.name, batchId, guards);
      return named === p.entries.length;
    } catch (err) {
      this.logger.warn({ msg: 'could not name a batch on its calls: it is cancelled on a stop', model: key, batchId, err: loggableError(err) });
      return false;
    }
  }

  /**
   * Creates the batch over the upload. A creation whose answer did not come (a timeout, a 5xx, a cut
   * connection) may have made the batch all the same: it is looked for by its upload in the
   * provider's list (again LLM_BATCH_LIST_SETTLE_MS later: the list may lag) and, found, waited for
   * as if its creation had answered. Before, the calls went to real time at once while that batch
   * ran them too, billed, until the sweep cancelled it: paid twice. Not found, the error stands (the
   * calls go to real time) and the upload is left to the sweep, which deletes it and cancels any
   * batch that shows up from it later.
   */
  private async createBatch(key: string, p: Pending, fileId: string, uploadedAt: number): Promise<BatchObject> {
    try {
      return await this.client.createBatchFromFile(p.provider, p.adapter, fileId, { keepUploadUnanswered: true });
    } catch (err) {
      // (Only an error that may hide a batch made: no answer at all, or a server's fault. A refusal made none.)
      const status = err instanceof ProviderError ? err.extra.status : undefined;
      if (!(err instanceof ProviderError) || (status !== undefined && status < 500)) throw err;
      const find = () => this.client.findBatchByFile(p.provider, p.adapter, fileId, uploadedAt - CLOCK_SLACK_MS);
      let found = await find().catch(() => null);
      if (!found && this.cfg.batchListSettleMs > 0 && !this.closed) {
        await this.pause(this.cfg.batchListSettleMs);
        found = await find().catch(() => null);
      }
      this.logger.warn({ msg: found ? 'a batch whose creation got no answer was found by its upload: waited for' : "a batch's creation got no answer and no batch was found from its upload", model: key, fileId, batchId: found?.id, err: loggableError(err) });
      if (!found) throw err;
      return found;
    }
  }

  private async runAdopted(batchId: string, a: Adopted): Promise<void> {
    let batch: BatchObject | undefined;
    let kept = false;
    try {
      batch = await this.again('a batch taken over could not be read', { batchId }, () => this.client.getBatch(a.provider, a.adapter, batchId));
      this.logger.log({ msg: 'waiting for a batch taken over', batchId, status: batch.status });
      // Given up when its sender would have given it up: LLM_BATCH_MAX_WAIT_MS after its creation.
      const created = typeof batch.created_at === 'number' ? batch.created_at * 1000 : Date.now();
      const polled = await this.poll(a, batch, created + this.cfg.batchMaxWaitMs, true);
      batch = polled.batch;
      if (polled.ended === 'closed') {
        kept = true;
        for (const e of a.entries.splice(0)) e.reject(handedOver(batchId));
        return;
      }
      if (polled.ended === 'late') {
        batch = await this.cancel(batchId, a, batch, `it did not finish within ${this.cfg.batchMaxWaitMs} ms of its creation`);
        if (!ranPartly(batch)) return failAdopted(a, `batch ${batchId} given up`);
      } else if (batch.status !== 'completed' && !ranPartly(batch)) return failAdopted(a, `batch ${batchId} ended ${batch.status}`);
      a.results = await this.results(a, ranPartly(batch) ? outputOnly(batch) : batch);
      answer(a.entries.splice(0), a.results, batchId, a.adapter);
    } catch (err) {
      const why = err instanceof ProviderError ? `${err.reason}: ${err.message}` : (err as Error).message;
      this.logger.warn({ msg: 'batch taken over failed', batchId, err: loggableError(err) });
      failAdopted(a, why);
    } finally {
      if (batch && !kept && TERMINAL.has(batch.status) && (await this.cleanUp(batchId, a, batch, a.tokens)) === 'deleted' && batch.input_file_id) {
        await this.strikeOff(a.provider.name, { fileId: batch.input_file_id });
      }
    }
  }

  /**
   * Polls until the batch ends: 'closed' when the collector closes first, 'late' past `until`. A
   * poll that fails for a passing reason (a timeout, a 5xx, a 429) is made again at the next
   * interval: giving the batch up would have its calls paid again while it still runs. Any other
   * error (the batch unknown, the key refused) ends the wait.
   */
  private async poll(p: Pending, batch: BatchObject, until: number, named: boolean): Promise<{ batch: BatchObject; ended: 'done' | 'closed' | 'late' }> {
    const me = { named, handOver: false };
    this.polling.add(me);
    try {
      while (!TERMINAL.has(batch.status)) {
        if (this.closed || me.handOver) return { batch, ended: 'closed' };
        if (Date.now() > until) return { batch, ended: 'late' };
        await this.pause(this.cfg.batchPollMs);
        if (this.closed || me.handOver) continue;
        try {
          batch = await this.client.getBatch(p.provider, p.adapter, batch.id);
        } catch (err) {
          if (!passing(err)) throw err;
          this.logger.warn({ msg: 'a batch poll failed: polling again', batchId: batch.id, err: loggableError(err) });
        }
      }
      return { batch, ended: 'done' };
    } finally {
      this.polling.delete(me);
    }
  }

  /**
   * A completed batch's answers (and errors), by line. Its lines are paid for: a read that fails for
   * a passing reason is tried again before its calls are made again in real time.
   */
  private results(p: Pending, batch: BatchObject): Promise<Map<string, LineResult>> {
    return this.again("a batch's results could not be read", { batchId: batch.id }, () => this.readResults(p, batch));
  }

  /** `fn`, tried again (three times in all, a poll interval apart) after an error that may pass. */
  private async again<T>(what: string, ids: { batchId: string } | { fileId: string }, fn: () => Promise<T>): Promise<T> {
    for (let tries = 1; ; tries++) {
      try {
        return await fn();
      } catch (err) {
        if (tries >= 3 || this.closed || !passing(err)) throw err;
        this.logger.warn({ msg: `${what}: trying again`, ...ids, err: loggableError(err) });
        await this.pause(this.cfg.batchPollMs);
      }
    }
  }

  private async readResults(p: Pending, batch: BatchObject): Promise<Map<string, LineResult>> {
    const lines = [
      ...(batch.output_file_id ? (await this.client.fileContent(p.provider, p.adapter, batch.output_file_id)).split('\n') : []),
      ...(batch.error_file_id ? (await this.client.fileContent(p.provider, p.adapter, batch.error_file_id)).split('\n') : []),
    ];
    const results = new Map<string, LineResult>();
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as { custom_id?: string; response?: { status_code: number; body: unknown } | null; error?: unknown };
        if (r.custom_id) results.set(r.custom_id, { status: r.response?.status_code ?? 500, body: r.response?.body ?? r.error, error: r.error });
      } catch {
        /* a line we cannot read: its request is answered as missing */
      }
    }
    return results;
  }

  /**
   * Deletes a batch's files, unless a call taken over elsewhere (a guard other than `tokens`) still
   * waits to read its line: the last reader deletes them. Without guards, at once.
   */
  private async cleanUp(key: string, p: Pending, batch: BatchObject, tokens: string[]): Promise<'deleted' | 'kept' | 'failed'> {
    if (this.guards && (batch.output_file_id || batch.error_file_id)) {
      try {
        const others = await this.guards.othersAwaitingBatch(batch.id, batch.input_file_id ?? null, tokens);
        if (others > 0) {
          this.logger.log({ msg: 'batch files kept for calls still to read them', model: key, batchId: batch.id, calls: others });
          return 'kept';
        }
      } catch (err) {
        this.logger.warn({ msg: 'could not tell whether a batch is still awaited: its files are kept', model: key, batchId: batch.id, err: loggableError(err) });
        return 'failed';
      }
    }
    return (await this.deleteFiles(p, batch)) ? 'deleted' : 'failed';
  }

  /**
   * Deletes at the providers what the uploads written down and past their time left there: the
   * upload (students' essays) and its batch's answers. An upload is past its time when its sender
   * should have read and deleted its batch long since (LLM_BATCH_MAX_WAIT_MS and ten minutes after
   * it was made), or at once after a poll interval when its sender gave the batch up or could not
   * delete a file. A call that still waits for the batch (a job's guard naming it) keeps it; a
   * batch no one waits for that is still running is cancelled, and its files go once it has ended;
   * an upload from which no batch was made is deleted; an upload whose answer never came (the
   * process killed, the connection cut) is looked for by its file name in the provider's list of
   * files. Instances sweeping at once take different uploads. Returns how many uploads were struck off.
   */
  async sweepUploads(providerOf: ProviderByName): Promise<number> {
    if (!this.uploads || this.closed) return 0;
    let struck = 0;
    for (const u of await this.uploads.claimDue(SWEEP_BATCH, Math.max(this.cfg.batchPollMs, 1_000) * 4)) {
      try {
        if (await this.sweepUpload(u, providerOf)) struck++;
      } catch (err) {
        this.logger.warn({ msg: 'an upload could not be swept: it is looked at again later', provider: u.provider, fileId: u.fileId, batchId: u.batchId, tries: u.tries, err: loggableError(err) });
      }
    }
    return struck;
  }

  private async sweepUpload(u: TrackedUpload, providerOf: ProviderByName): Promise<boolean> {
    const at = providerOf(u.provider);
    if (!at) {
      this.logger.warn({ msg: 'an upload is left at a provider with no API key here: looked at again later', provider: u.provider, fileId: u.fileId });
      return false;
    }
    let fileId = u.fileId;
    if (fileId === null) {
      // Its answer never came: whether the provider stored it is in its list of files, by its name.
      fileId = await this.client.findFileByName(at.provider, at.adapter, u.name, u.uploadedAt - CLOCK_SLACK_MS);
      if (fileId === null) {
        await this.uploads!.forgetName(u.provider, u.name);
        this.logger.log({ msg: 'an upload written down was never stored at the provider', provider: u.provider });
        return true;
      }
      await this.uploads!.uploaded(u.provider, u.name, fileId);
    }
    if (this.guards && (await this.guards.othersAwaitingBatch(u.batchId ?? '', fileId, [])) > 0) return false;
    let batch: BatchObject | null;
    try {
      batch = u.batchId ? await this.client.getBatch(at.provider, at.adapter, u.batchId) : await this.client.findBatchByFile(at.provider, at.adapter, fileId, u.uploadedAt - CLOCK_SLACK_MS);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      batch = null; // the provider no longer knows the batch: only the upload may be left
    }
    if (batch && !TERMINAL.has(batch.status)) {
      // No one waits for its answers: what it has not run yet is neither run nor billed.
      if (!ENDING.has(batch.status)) await this.client.cancelBatch(at.provider, at.adapter, batch.id);
      this.logger.warn({ msg: 'a batch no call waits for is cancelled: its files are deleted once it has ended', provider: u.provider, batchId: batch.id });
      await this.uploads!.dueIn(u.provider, u.name, this.cfg.batchPollMs, batch.id);
      return false;
    }
    const files = batch ?? { id: '', input_file_id: fileId, output_file_id: null, error_file_id: null };
    if (!(await this.deleteFiles(at, { ...files, input_file_id: fileId }))) return false;
    await this.uploads!.forgetName(u.provider, u.name);
    this.logger.log({ msg: 'an upload left at a provider is deleted', provider: u.provider, fileId, batchId: batch?.id ?? null });
    return true;
  }

  /** Waits `ms`, or less when the collector closes (not at all once it has). */
  private pause(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waits.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waits.add(done);
    });
  }

  /**
   * Cancels a batch given up on, so the provider neither runs nor bills what it has not run yet
   * (what it ran is billed: its answers are lost to us, the calls made again). A cancel that
   * fails is logged by the batch's id, for the operator to reconcile with the provider's bill.
   */
  private async cancel(key: string, p: Pending, batch: BatchObject, why: string): Promise<BatchObject> {
    let cancelled = false;
    try {
      if (!ENDING.has(batch.status)) batch = await this.client.cancelBatch(p.provider, p.adapter, batch.id);
      cancelled = true;
    } catch (err) {
      this.logger.warn({ msg: 'could not cancel a batch given up on', model: key, batchId: batch.id, err: loggableError(err) });
    }
    // 'cancelling' is not the end: the lines the batch ran are billed, and their answers are in its
    // output file only once it is 'cancelled'. Read at once, then waited for (LLM_BATCH_CANCEL_WAIT_MS
    // at most), so that they are answered from it, not paid again in real time (an answer paid
    // twice, once in no ledger).
    const until = Date.now() + this.cfg.batchCancelWaitMs;
    while (cancelled && this.cfg.batchCancelWaitMs > 0 && batch.status === 'cancelling') {
      try {
        batch = await this.client.getBatch(p.provider, p.adapter, batch.id);
      } catch (err) {
        if (!passing(err)) break;
      }
      // (A stop reads it once: it does not wait for the provider.)
      if (batch.status !== 'cancelling' || Date.now() >= until || this.closed) break;
      await sleep(Math.min(this.cfg.batchPollMs, CANCEL_POLL_MS, Math.max(1, until - Date.now())));
    }
    if (batch.status === 'cancelling') {
      this.logger.warn({ msg: 'a batch given up on is still cancelling: the lines it ran may be paid again in real time', model: key, batchId: batch.id, requests: p.entries.length });
    }
    this.logger.warn({ msg: 'batch given up', model: key, batchId: batch.id, requests: p.entries.length, why, cancelled });
    return batch;
  }

  /**
   * A batch leaves its files at the provider: the requests uploaded (students' essays) and the
   * answers. They are deleted once read (students' data is not left where no one needs it); a file
   * that cannot be deleted is logged by id, and false returned (the sweep tries again).
   */
  private async deleteFiles(p: Pick<Pending, 'provider' | 'adapter'>, batch: Pick<BatchObject, 'id' | 'input_file_id' | 'output_file_id' | 'error_file_id'>): Promise<boolean> {
    const ids = [batch.input_file_id, batch.output_file_id, batch.error_file_id].filter((id): id is string => typeof id === 'string' && id.length > 0);
    let all = true;
    for (const id of ids) all = (await this.deleteFile(p.provider, p.adapter, id, { batchId: batch.id })) && all;
    return all;
  }

  /** Deletes one file at the provider: true once it is gone (deleted now, or already: 404); a failure is logged by id. */
  private async deleteFile(provider: EnabledProvider, adapter: DialectAdapter, fileId: string, ids: { batchId?: string; fileId?: string }): Promise<boolean> {
    try {
      await this.client.deleteFile(provider, adapter, fileId);
      return true;
    } catch (err) {
      if (isNotFound(err)) return true;
      this.logger.warn({ msg: 'could not delete a batch file', ...ids, fileId, err: loggableError(err) });
      return false;
    }
  }

  /**
   * The first step of a stop, before the workers' drain: the batches being polled now that are
   * named on their calls' guards are handed over at once, instead of when close() comes after the
   * drain. The others, and batches sent from now on, go on until close().
   */
  handOver(): void {
    let asked = false;
    for (const s of this.polling) {
      if (!s.named) continue;
      s.handOver = true;
      asked = true;
    }
    if (asked) for (const wake of [...this.waits]) wake();
  }

  /**
   * Stops (shutdown): calls collected and not sent fail at once, without an upload (a batch no one
   * would poll is only a cost). The batches under way stop being polled: those named on their calls'
   * guards are handed over (their calls end `batch_handed_over`, for the jobs' retries to wait for
   * them), the rest are cancelled at the provider and their calls failed, so their callers can make
   * them again elsewhere.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const [key, p] of [...this.pending]) {
      this.pending.delete(key);
      if (p.timer) clearTimeout(p.timer);
      for (const e of p.entries) e.reject(new ProviderError('retryable', 'batch_failed', 'the service is stopping'));
    }
    for (const wake of [...this.waits]) wake();
    await Promise.allSettled([...this.running]);
  }
}

/** Each waiting call's own line of a completed batch, as an answer or as its own error. */
function answer(entries: Entry[], results: Map<string, LineResult>, batchId: string, adapter: DialectAdapter): void {
  for (const e of entries) {
    const r = results.get(e.customId);
    if (!r) {
      e.reject(new ProviderError('retryable', 'batch_failed', `batch ${batchId} has no answer for this request`));
      continue;
    }
    try {
      e.resolve(readCompletion(adapter, r.status, r.body));
    } catch (err) {
      e.reject(err instanceof ProviderError ? err : new ProviderError('retryable', 'malformed_response', (err as Error).message));
    }
  }
}

/**
 * An expired or cancelled batch that ran some of its lines before it ended: their answers are in its
 * output file, and the provider bills them (OpenAI's Batch API, and those that copy it). They are
 * answered from it, paid once at the batch price; the lines it did not run (in its error file, as
 * `batch_expired` or cancelled) fail with `batch_failed` and are made in real time. (Every line
 * failed before, and was paid again in real time: two payments for one answer, one of them in no
 * ledger.)
 */
function ranPartly(batch: BatchObject): boolean {
  return (batch.status === 'expired' || batch.status === 'cancelled') && typeof batch.output_file_id === 'string' && batch.output_file_id.length > 0;
}

/** The batch as its output file alone answers it (its error file's lines are the ones not run). */
function outputOnly(batch: BatchObject): BatchObject {
  return { ...batch, error_file_id: null };
}

function failAll(entries: Entry[], reason: string): void {
  for (const e of entries) e.reject(new ProviderError('retryable', 'batch_failed', reason));
}

/** A batch taken over failed as a whole: the calls waiting fail, and so does any that joins before it is forgotten. */
function failAdopted(a: Adopted, reason: string): void {
  a.failure = reason;
  failAll(a.entries.splice(0), reason);
}

/** An error of the Batch API that may pass (a timeout, a 5xx, a 429): worth asking again. */
function passing(err: unknown): boolean {
  return err instanceof ProviderError && (err.errorClass === 'retryable' || err.errorClass === 'fallback');
}

/** The call still waits in the batch, named on its guard: the job's retry waits for it there. */
function handedOver(batchId: string): ProviderError {
  return new ProviderError('retryable', 'batch_handed_over', `the service is stopping; the call waits in batch ${batchId} for the job's retry`);
}

/** The provider does not know the file or batch (404): gone already. */
function isNotFound(err: unknown): boolean {
  return err instanceof ProviderError && err.extra.status === 404;
}
