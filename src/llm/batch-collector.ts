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

/**
 * Calls that can wait (paid deep reviews) go to the provider's Batch API, at its batch price
 * (half, for DashScope, OpenAI and Zhipu). Requests for one model are collected for
 * LLM_BATCH_WINDOW_MS (or until LLM_BATCH_MAX_REQUESTS), uploaded as one JSONL file, and the batch
 * is polled every LLM_BATCH_POLL_MS until it finishes or LLM_BATCH_MAX_WAIT_MS has passed. Each
 * caller gets its own line's answer, or its own error; a batch that fails as a whole fails every
 * line with `batch_failed`, and the gateway then makes those calls in real time.
 */
export class BatchCollector {
  private readonly logger = new Logger(BatchCollector.name);
  private readonly pending = new Map<string, Pending>();
  private readonly running = new Set<Promise<void>>();
  private closed = false;

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
        if (Date.now() > until || this.closed) return failAll(`batch ${batch.id} did not finish in time`);
        await new Promise((r) => setTimeout(r, this.cfg.batchPollMs));
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

  /** Sends what is collected now and waits for the batches under way (shutdown). */
  async close(): Promise<void> {
    for (const key of [...this.pending.keys()]) this.flush(key);
    this.closed = true;
    await Promise.allSettled([...this.running]);
  }
}
