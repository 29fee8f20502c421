/**
 * Group commit for one kind of statement, per key (a tenant): items submitted while a statement for
 * the same key is running wait and go together in the next one; an item that finds none running
 * goes at the end of the current tick (with whatever else was submitted in that tick). So a lone
 * item adds no wait, and under load one statement serves many items — no fixed window to tune.
 * `run` answers each item in the order given (or throws, which fails every item of that batch).
 */
export class KeyedBatcher<I, O> {
  /**
   * Each key's state, kept once made: keys are few and fixed (a kind of statement), and a Map whose
   * entries come and go per batch would leave V8 hash tables behind that promote what they held
   * (bench/probe-map-churn.js).
   */
  private readonly keys = new Map<string, KeyState<I, O>>();

  constructor(
    private readonly run: (key: string, items: I[]) => Promise<O[]>,
    private readonly maxBatch = 100,
  ) {}

  submit(key: string, item: I): Promise<O> {
    let k = this.keys.get(key);
    if (!k) this.keys.set(key, (k = { queue: [], busy: false, running: null }));
    const state = k;
    return new Promise<O>((resolve, reject) => {
      state.queue.push({ item, resolve, reject });
      if (!state.busy) {
        state.busy = true;
        setImmediate(() => this.flush(key, state));
      }
    });
  }

  private flush(key: string, k: KeyState<I, O>): void {
    if (k.queue.length === 0) {
      k.busy = false;
      return;
    }
    let batch: Array<Pending<I, O>>;
    if (k.queue.length <= this.maxBatch) {
      batch = k.queue;
      k.queue = [];
    } else batch = k.queue.splice(0, this.maxBatch);
    k.running = this.run(
      key,
      batch.map((b) => b.item),
    )
      .then(
        (out) => batch.forEach((b, i) => b.resolve(out[i])),
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => {
        k.running = null;
        // What arrived meanwhile goes now; the key stays busy until its queue is empty.
        this.flush(key, k);
      });
  }

  /** Waits until everything submitted so far is written (shutdown). */
  async drain(): Promise<void> {
    for (;;) {
      const states = [...this.keys.values()];
      const running = states.map((k) => k.running).filter((p): p is Promise<void> => p !== null);
      if (running.length) await Promise.allSettled(running);
      else if (states.some((k) => k.busy)) await new Promise((r) => setImmediate(r));
      else return;
    }
  }
}

interface Pending<I, O> {
  item: I;
  resolve(o: O): void;
  reject(e: unknown): void;
}

interface KeyState<I, O> {
  queue: Array<Pending<I, O>>;
  /** a flush is due or running; items wait for it */
  busy: boolean;
  running: Promise<void> | null;
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
