import { describe, expect, it } from 'vitest';
import { excerpt } from '../../src/errors.js';
import { nestsDeeperThan } from '../../src/server/json-body.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');

describe('nestsDeeperThan', () => {
  it('counts arrays and objects, not brackets inside strings or after escapes', () => {
    expect(nestsDeeperThan(bytes('{"a":[[1]]}'), 3)).toBe(false);
    expect(nestsDeeperThan(bytes('{"a":[[1]]}'), 2)).toBe(true);
    expect(nestsDeeperThan(bytes('[{"k":"[[[[{{{{"}]'), 2)).toBe(false);
    expect(nestsDeeperThan(bytes('["\\"[[[[", [[1]]]'), 2)).toBe(true);
    expect(nestsDeeperThan(bytes('["\\\\", [[1]]]'), 3)).toBe(false);
    expect(nestsDeeperThan(bytes('["é€😀", [1]]'), 2)).toBe(false);
    // siblings do not add up: depth, not count
    expect(nestsDeeperThan(bytes(`[${'[1],'.repeat(1000)}[2]]`), 2)).toBe(false);
    expect(nestsDeeperThan(bytes('['.repeat(1_000_000)), 32)).toBe(true);
  });
});

describe('excerpt', () => {
  it('is short whatever the value: flat, deep, or long strings', () => {
    const flat = Array.from({ length: 1_000_000 }, () => 1);
    expect(excerpt(flat, 40)).toBe(`[${'1,'.repeat(19)}1…`);
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(excerpt(deep)).toBe('[[[[[…]]]]]');
    expect(excerpt('x'.repeat(10_000), 10)).toBe(`"${'x'.repeat(9)}…`);
    expect(excerpt({ a: '<b>', c: [1, 2] })).toBe('{"a":"\\u003cb\\u003e","c":[1,2]}');
    expect(excerpt(1e39)).toBe('1e+39');
    expect(excerpt(null)).toBe('null');
  });
});
