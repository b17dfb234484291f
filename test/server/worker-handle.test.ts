// The respawn policy for dead workers (src/server/worker-handle.ts): retries after a delay, up to
// a cap of failures in a row, reset by any worker that starts; shutdown ends the retries.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RespawnPolicy } from '../../src/server/worker-handle.js';

beforeEach(() => { vi.useFakeTimers(); });
afterEach(() => { vi.useRealTimers(); });

const failing = () => vi.fn(() => Promise.reject(new Error('no worker')));

describe('RespawnPolicy', () => {
  it('retries a failing replacement after the delay, up to the cap of failures in a row', async () => {
    const policy = new RespawnPolicy(3, 1000);
    const spawn = failing();
    const failures: number[] = [];
    policy.replace(spawn, (_e, n) => failures.push(n), () => false);
    await vi.advanceTimersByTimeAsync(999);
    expect(spawn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(spawn).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(spawn).toHaveBeenCalledTimes(3);
    expect(failures).toEqual([1, 2, 3]);
  });

  it('a replacement that starts ends the retries', async () => {
    const policy = new RespawnPolicy(3, 1000);
    const spawn = vi.fn(() => (spawn.mock.calls.length < 2 ? Promise.reject(new Error('no')) : Promise.resolve()));
    policy.replace(spawn, () => {}, () => false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(spawn).toHaveBeenCalledTimes(2);
  });

  it('a worker that starts resets the count of failures in a row', async () => {
    const policy = new RespawnPolicy(2, 1000);
    const failures: number[] = [];
    policy.replace(failing(), (_e, n) => failures.push(n), () => false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(failures).toEqual([1, 2]);
    policy.started();
    const spawn = failing();
    policy.replace(spawn, (_e, n) => failures.push(n), () => false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(spawn).toHaveBeenCalledTimes(2);
    expect(failures).toEqual([1, 2, 1, 2]);
  });

  it('stops retrying once the pool is shutting down', async () => {
    const policy = new RespawnPolicy(5, 1000);
    const spawn = failing();
    let stopped = false;
    policy.replace(spawn, () => { stopped = true; }, () => stopped);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(spawn).toHaveBeenCalledTimes(1);
  });
});
