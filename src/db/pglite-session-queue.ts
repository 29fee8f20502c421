import type { PGlite } from '@electric-sql/pglite';

interface Pending {
  handlerId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (err: Error) => void;
}

/**
 * PGlite runs one backend session for every client connection of pglite-socket. Its own queue
 * keeps a transaction's statements together, but interleaves the messages of the extended query
 * protocol (Parse, Bind, Execute … Sync) of different connections, and a Parse of one client can
 * replace the unnamed statement of another; under concurrency with transactions that corrupts
 * answers or hangs clients. This queue hands the session to one connection at a time: from its
 * first message until the unit ends (a simple Query, or a Sync) and, if that leaves a
 * transaction open, until the transaction ends.
 *
 * It has the interface pglite-socket's handlers call (enqueue, clearQueueForHandler,
 * clearTransactionIfNeeded, getQueueLength) and replaces the server's own queue.
 */
export class PgliteSessionQueue {
  private readonly waiting: Pending[] = [];
  private owner: number | null = null;
  private running = false;

  constructor(private readonly db: PGlite) {}

  getQueueLength(): number {
    return this.waiting.length;
  }

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ handlerId, message, onData, resolve, reject });
      void this.pump();
    });
  }

  clearQueueForHandler(handlerId: number): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i].handlerId === handlerId) {
        this.waiting[i].reject(new Error('Handler disconnected'));
        this.waiting.splice(i, 1);
      }
    }
  }

  /** A client went away while it held the session: roll back what it left open and let others in. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.owner !== handlerId) return;
    this.owner = null;
    if (this.db.isInTransaction()) await this.db.exec('ROLLBACK').catch(() => undefined);
    void this.pump();
  }

  private next(): Pending | undefined {
    const i = this.owner === null ? 0 : this.waiting.findIndex((p) => p.handlerId === this.owner);
    return i >= 0 && i < this.waiting.length ? this.waiting.splice(i, 1)[0] : undefined;
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let item = this.next(); item; item = this.next()) {
        this.owner = item.handlerId;
        let bytes = 0;
        try {
          await this.db.runExclusive(() =>
            this.db.execProtocolRawStream(item!.message, {
              onRawData: (data: Uint8Array) => {
                bytes += data.length;
                item!.onData(data);
              },
            }),
          );
        } catch (err) {
          this.owner = null;
          item.reject(err as Error);
          continue;
        }
        if (endsUnit(item.message) && !this.db.isInTransaction()) this.owner = null;
        item.resolve(bytes);
      }
    } finally {
      this.running = false;
    }
  }
}

/**
 * Does this message end a unit of work? A simple Query ('Q'), a Sync ('S'), a Terminate ('X'), or
 * an untyped startup-phase message (its first four bytes are its length, so the first is 0).
 */
function endsUnit(message: Uint8Array): boolean {
  const type = message[0];
  return type === 0x51 /* Q */ || type === 0x53 /* S */ || type === 0x58 /* X */ || type === 0;
}
