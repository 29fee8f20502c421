/**
 * Long CPU work done in the request's process (a calibration's features over thousands of essays,
 * a regrade) gives the event loop back every `sliceMs` of its own time, so that other tenants'
 * requests are served in between: `await slice()` after each item yields only once the slice is
 * used up. A count of items would not do: one essay of 20,000 characters takes 15–25 ms.
 */
export function timeSlicer(sliceMs = 10, now: () => number = () => performance.now()): () => Promise<void> {
  let since = now();
  return async () => {
    if (now() - since < sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    since = now();
  };
}
