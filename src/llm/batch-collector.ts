import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { loggableError } from '../common/error-rendering';
import type { LlmConfig } from '../config/app-config';
import type { EnabledProvider } from './llm-models';
import type { CatalogModel } from './catalog';
import { BatchObject, ProviderClient, readCompletion } from './provider-client';
import type { DialectAdapter } from './providers';
import { ChatParams, Completion, ProviderError } from './types';

interface Entry {
  customId: string;
  body: Record<string, unknown>;
  resolve(c: Completion): void;
  reject(e: ProviderError): void;
}

interface Pending {
  provider: EnabledProvider;
  adapter: DialectAdapter;
  entries: Entry[];
  timer?: NodeJS.Timeout;
}

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
/** Ended, or ending at the provider's side ('cancelling'): not to be cancelled again. */
const ENDING = new Set([...TERMINAL, 'cancelling']);

/**
 * Calls that can wait (paid deep reviews) go to the provider's Batch API, at its batch price
 * (half, for DashScope, OpenAI and Zhipu). Requests for one model are collected for
 * LLM_BATCH_WINDOW_MS (or until LLM_BATCH_MAX_REQUESTS), uploaded as one JSONL file, and the batch
 * is polled every LLM_BATCH_POLL_MS until it finishes or LLM_BATCH_MAX_WAIT_MS has passed. Each
 * caller gets its own line's answer, or its own error; a batch that fails as a whole fails every
 * line with `batch_failed`, and the gateway then makes those calls in real time.
 *
 * A batch given up before it ended (LLM_BATCH_MAX_WAIT_MS passed, or the service is stopping) is
 * cancelled at the provider, so that what it has not run yet is neither run nor billed while its
 * calls are made again in real time. On a stop, the calls collected but not sent yet are not
 * uploaded at all: they fail at once (`batch_failed`), and the waiting batches stop being polled.
 */
export class BatchCollector {
  private readonly logger = new Logger(BatchCollector.name);
  private readonly pending = new Map<string, Pending>();
  private readonly running = new Set<Promise<void>>();
  private closed = false;
  /** The batches' polling waits, each ended at once when the collector closes. */
  private readonly waits = new Set<() => void>();

  constructor(
    private readonly client: ProviderClient,
    private readonly cfg: LlmConfig,
  ) {}

  submit(provider: EnabledProvider, adapter: DialectAdapter, model: CatalogModel, params: ChatParams): Promise<Completion> {
    if (this.closed) return Promise.reject(new ProviderError('retryable', 'batch_failed', 'shutting down'));
    return new Promise<Completion>((resolve, reject) => {
      let p = this.pending.get(model.key);
      if (!p) {
        p = { provider, adapter, entries: [] };
        this.pending.set(model.key, p);
        p.timer = setTimeout(() => this.flush(model.key), this.cfg.batchWindowMs);
        p.timer.unref();
      }
      p.entries.push({ customId: randomUUID(), body: this.client.batchBody(adapter, model, params), resolve, reject });
      if (p.entries.length >= this.cfg.batchMaxRequests) this.flush(model.key);
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
    const failAll = (reason: string) => {
      for (const e of p.entries) e.reject(new ProviderError('retryable', 'batch_failed', reason));
    };
    let batch: BatchObject | undefined;
    try {
      const jsonl = p.entries.map((e) => JSON.stringify({ custom_id: e.customId, method: 'POST', url: '/v1/chat/completions', body: e.body })).join('\n');
      batch = await this.client.createBatch(p.provider, p.adapter, jsonl);
      this.logger.log({ msg: 'batch submitted', model: key, batchId: batch.id, requests: p.entries.length });
      const until = Date.now() + this.cfg.batchMaxWaitMs;
      while (!TERMINAL.has(batch.status)) {
        if (Date.now() > until || this.closed) {
          const why = this.closed ? 'the service is stopping' : `it did not finish within ${this.cfg.batchMaxWaitMs} ms`;
          batch = await this.cancel(key, p, batch, why);
          return failAll(`batch ${batch.id} given up: ${why}`);
        }
        await this.pause(this.cfg.batchPollMs);
        if (this.closed) continue;
        batch = await this.client.getBatch(p.provider, p.adapter, batch.id);
      }
      if (batch.status !== 'completed') return failAll(`batch ${batch.id} ended ${batch.status}`);
      const lines = [
        ...(batch.output_file_id ? (await this.client.fileContent(p.provider, p.adapter, batch.output_file_id)).split('\n') : []),
        ...(batch.error_file_id ? (await this.client.fileContent(p.provider, p.adapter, batch.error_file_id)).split('\n') : []),
      ];
      const results = new Map<string, { status: number; body: unknown; error?: unknown }>();
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          const r = JSON.parse(line) as { custom_id?: string; response?: { status_code: number; body: unknown } | null; error?: unknown };
          if (r.custom_id) results.set(r.custom_id, { status: r.response?.status_code ?? 500, body: r.response?.body ?? r.error, error: r.error });
        } catch {
          /* a line we cannot read: its request is answered as missing below */
        }
      }
      for (const e of p.entries) {
        const r = results.get(e.customId);
        if (!r) {
          e.reject(new ProviderError('retryable', 'batch_failed', `batch ${batch.id} has no answer for this request`));
          continue;
        }
        try {
          e.resolve(readCompletion(p.adapter, r.status, r.body));
        } catch (err) {
          e.reject(err instanceof ProviderError ? err : new ProviderError('retryable', 'malformed_response', (err as Error).message));
        }
      }
    } catch (err) {
      const why = err instanceof ProviderError ? `${err.reason}: ${err.message}` : (err as Error).message;
      this.logger.warn({ msg: 'batch failed', model: key, err: loggableError(err) });
      failAll(why);
    } finally {
      // A batch given up before it ended (its wait ran out, or a shutdown) keeps running at the
      // provider: its upload is deleted now, its results are left to the provider's expiry.
      if (batch) await this.deleteFiles(key, p, TERMINAL.has(batch.status) ? batch : { ...batch, output_file_id: null, error_file_id: null });
    }
  }

  /** Waits `ms`, or less when the collector closes. */
  private pause(ms: number): Promise<void> {
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
    this.logger.warn({ msg: 'batch given up', model: key, batchId: batch.id, requests: p.entries.length, why, cancelled });
    return batch;
  }

  /**
   * A batch leaves its files at the provider: the requests uploaded (students' essays) and the
   * answers. They are deleted once read (students' data is not left where no one needs it); a file
   * that cannot be deleted is logged by id and left to the provider's own expiry.
   */
  private async deleteFiles(key: string, p: Pending, batch: BatchObject): Promise<void> {
    const ids = [batch.input_file_id, batch.output_file_id, batch.error_file_id].filter((id): id is string => typeof id === 'string' && id.length > 0);
    for (const id of ids) {
      try {
        await this.client.deleteFile(p.provider, p.adapter, id);
      } catch (err) {
        this.logger.warn({ msg: 'could not delete a batch file', model: key, batchId: batch.id, fileId: id, err: loggableError(err) });
      }
    }
  }

  /**
   * Stops (shutdown): calls collected and not sent fail at once, without an upload (a batch no one
   * would poll is only a cost), and the batches under way are cancelled at the provider and their
   * calls failed, so their callers (jobs) can make them again elsewhere.
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
