import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverModels } from '../../src/server/models.js';
import { DEFAULT_CONFIG } from '../../src/server/config.js';
import { TINY_IMAGE } from '../helpers/fixtures.js';

describe('discoverModels', () => {
  it('serves every bundle of a models folder', async () => {
    const models = await discoverModels(resolve(import.meta.dirname, '..', '..', 'models'), DEFAULT_CONFIG);
    expect([...models.keys()]).toEqual(['brown-lm-jr', 'fashion-mnist-jr', 'fashion-mnist-plain']);
  });

  it('serves one bundle alone when --models-dir is that bundle', async () => {
    const models = await discoverModels(TINY_IMAGE, DEFAULT_CONFIG);
    expect([...models.keys()]).toEqual(['tiny-image']);
    expect(models.get('tiny-image')!.dir).toBe(TINY_IMAGE);
  });
});
