/** What makes a JSON text too costly to take, before it is parsed. */
export interface JsonShapeLimits {
  /** deepest nesting of arrays and objects */
  depth: number;
  /** most elements in one array, or members in one object */
  items: number;
  /** most elements and members in all */
  totalItems: number;
}

/**
 * Why a JSON text is refused before parsing ('depth', 'items' or 'totalItems'), or null: one pass
 * over the bytes (strings and their escapes skipped), stopping as soon as a limit is passed, so
 * linear in the length of the text whatever it holds. Counting matters as much as nesting: the
 * validation turns every element of a body's arrays into an object before any DTO's own size
 * check, and class-transformer dedupes an object's keys in quadratic time, so a body of a few
 * megabytes with hundreds of thousands of items could exhaust the heap or hold the event loop for
 * minutes. Items are counted by their separating commas (an empty container counts none).
 */
export function jsonShapeProblem(text: Buffer, limits: JsonShapeLimits): keyof JsonShapeLimits | null {
  // items in each open container, by depth (the first item is counted at its first non-space byte)
  const counts = new Int32Array(limits.depth + 2);
  const empty = new Uint8Array(limits.depth + 2); // the container at this depth has no item yet
  let depth = 0;
  let total = 0;
  let inString = false;
  const item = (): keyof JsonShapeLimits | null => {
    if (depth === 0) return null;
    if (++counts[depth] > limits.items) return 'items';
    if (++total > limits.totalItems) return 'totalItems';
    return null;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      if (depth > 0) depth--;
      continue;
    }
    if (c === 0x2c /* , */) {
      const why = item();
      if (why) return why;
      continue;
    }
    if (depth > 0 && empty[depth]) {
      // the container's first item starts here
      empty[depth] = 0;
      const why = item();
      if (why) return why;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > limits.depth) return 'depth';
      counts[depth] = 0;
      empty[depth] = 1;
    }
  }
  return null;
}
