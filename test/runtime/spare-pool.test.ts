import { describe, expect, it } from 'vitest';
import { SPARES_PER_KEY, SparePool } from '../../src/runtime/spare-pool.js';

describe('SparePool', () => {
  it('has nothing for a key it was never given', () => {
    expect(new SparePool<object>().take('a')).toBeUndefined();
  });

  it('hands back what it was given, once', () => {
    const pool = new SparePool<object>();
    const item = {};
    pool.give('a', item);
    expect(pool.take('a')).toBe(item);
    expect(pool.take('a')).toBeUndefined();
  });

  it('keeps keys apart', () => {
    const pool = new SparePool<object>();
    const a = {}, b = {};
    pool.give('a', a);
    pool.give('b', b);
    expect(pool.take('b')).toBe(b);
    expect(pool.take('b')).toBeUndefined();
    expect(pool.take('a')).toBe(a);
  });

  it(`keeps at most ${SPARES_PER_KEY} per key and drops the rest`, () => {
    const pool = new SparePool<number>();
    for (let i = 0; i < SPARES_PER_KEY + 3; i++) pool.give('k', i);
    const kept: number[] = [];
    for (let x = pool.take('k'); x !== undefined; x = pool.take('k')) kept.push(x);
    expect(kept.sort()).toEqual(Array.from({ length: SPARES_PER_KEY }, (_, i) => i));
  });
});
