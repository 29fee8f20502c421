/**
 * Group commit for one kind of statement, per key (a tenant): items submitted while a statement for
 * the same key is running wait and go together in the next one; an item that finds none running
 * goes at the end of the current tick (with whatever else was submitted in that tick). So a lone
 * item adds no wait, and under load one statement serves many items — no fixed window to tune.
 * `run` answers each item in the order given (or throws, which fails every item of that batch).
 */
export class KeyedBatcher<I, O> {
  private readonly queues = new Map<string, Array<{ item: I; resolve(o: O): void; reject(e: unknown): void }>>();
  private readonly busy = new Set<string>();
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly run: (key: string, items: I[]) => Promise<O[]>,
    private readonly maxBatch = 100,
  ) {}

  submit(key: string, item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      let queue = this.queues.get(key);
      if (!queue) this.queues.set(key, (queue = []));
      queue.push({ item, resolve, reject });
      if (!this.busy.has(key)) {
        this.busy.add(key);
        setImmediate(() => this.flush(key));
      }
    });
  }

  private flush(key: string): void {
    const queue = this.queues.get(key) ?? [];
    const batch = queue.splice(0, this.maxBatch);
    if (queue.length === 0) this.queues.delete(key);
    if (batch.length === 0) {
      this.busy.delete(key);
      return;
    }
    const done = this.run(
      key,
      batch.map((b) => b.item),
    )
      .then(
        (out) => batch.forEach((b, i) => b.resolve(out[i])),
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => {
        this.running.delete(done);
        // What arrived meanwhile goes now; the key stays busy until its queue is empty.
        if (this.queues.has(key)) this.flush(key);
        else this.busy.delete(key);
      });
    this.running.add(done);
  }

  /** Waits until everything submitted so far is written (shutdown). */
  async drain(): Promise<void> {
    while (this.running.size || this.queues.size) {
      await Promise.allSettled([...this.running]);
      if (!this.running.size && this.queues.size) await new Promise((r) => setImmediate(r));
    }
  }
}

/**
 * Reads of one kind by id, gathered as KeyedBatcher gathers writes: the ids asked for while a read
 * runs (or in the same tick) go in the next one, each id once. A lone read adds no wait; under load,
 * say thousands of tenants each making its first call, one statement serves them all. `load`
 * answers the ids it found; an id it did not find gets undefined.
 */
export class BatchLoader<V> {
  private readonly batcher: KeyedBatcher<string, V | undefined>;

  constructor(load: (ids: string[]) => Promise<Map<string, V>>, maxBatch = 500) {
    this.batcher = new KeyedBatcher(async (_, ids) => {
      const found = await load([...new Set(ids)]);
      return ids.map((id) => found.get(id));
    }, maxBatch);
  }

  get(id: string): Promise<V | undefined> {
    return this.batcher.submit('', id);
  }
}
