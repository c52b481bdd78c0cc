/** The one time limit helper: the value in time, the caller's error when late, and the timer never left behind. */
import { describe, expect, it } from 'vitest';
import { atMost, withTimeout } from '../shared/timeout.js';

const after = <T>(ms: number, v: T) => new Promise<T>((r) => setTimeout(() => r(v), ms));

describe('withTimeout()', () => {
  it('gives the value when it comes in time, and the error of the one who asked when it does not', async () => {
    expect(await withTimeout(after(5, 'ok'), 200, () => new Error('late'))).toBe('ok');
    await expect(withTimeout(after(200, 'ok'), 20, () => new Error('late'))).rejects.toThrow('late');
    await expect(withTimeout(Promise.reject(new Error('own')), 200, () => new Error('late'))).rejects.toThrow('own');
  });
  it('atMost waits no longer than asked and never fails', async () => {
    const t0 = Date.now();
    await atMost(new Promise(() => undefined), 30);
    expect(Date.now() - t0).toBeLessThan(200);
    await atMost(Promise.reject(new Error('x')), 30);
  });
});
