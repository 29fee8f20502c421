import { timeSlicer } from './time-slice';

describe('timeSlicer', () => {
  it('yields to the event loop only once its slice of time is used up, then starts a new slice', async () => {
    let clock = 0;
    const slice = timeSlicer(10, () => clock);
    let ran = false;
    setImmediate(() => (ran = true));
    clock = 9;
    await slice(); // within the slice: no turn of the loop
    expect(ran).toBe(false);
    clock = 10;
    await slice(); // used up: the loop turns (the immediate runs)
    expect(ran).toBe(true);
    let again = false;
    setImmediate(() => (again = true));
    clock = 15;
    await slice(); // a new slice began at 10
    expect(again).toBe(false);
    clock = 21;
    await slice();
    expect(again).toBe(true);
  });
});
