/**
 * A Map for short-lived entries, such as one per request in flight, that does not keep what its
 * entries held alive after they are deleted.
 *
 * Why: V8 rebuilds a Map's hash table as keys come and go, and every table it leaves behind links
 * to its successor and still holds the entries it had. Once the Map itself is old (any Map a
 * service keeps for its lifetime), that chain is reachable from the old generation, so every value
 * the Map held at a rebuild survives the young-generation collections and is promoted, to be freed
 * only by a full mark-compact. A plain Map of requests in flight promoted each request's objects
 * (bench/probe-tail.ts: mark-compacts every 1.2 s at 550 requests/s, each a burst of slow answers).
 *
 * Here each value sits in a small box that is emptied when its key is deleted (or its value
 * replaced): a left-behind table holds empty boxes only.
 */
export class TransientMap<K, V> {
  private readonly boxes = new Map<K, { value: V | undefined }>();

  get(key: K): V | undefined {
    return this.boxes.get(key)?.value;
  }

  has(key: K): boolean {
    return this.boxes.has(key);
  }

  set(key: K, value: V): void {
    const box = this.boxes.get(key);
    if (box) box.value = value;
    else this.boxes.set(key, { value });
  }

  delete(key: K): boolean {
    const box = this.boxes.get(key);
    if (!box) return false;
    box.value = undefined;
    return this.boxes.delete(key);
  }

  get size(): number {
    return this.boxes.size;
  }
}
