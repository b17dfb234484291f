// The pool's settings (src/server/pool-options.ts): ServerConfig's names, DEFAULT_CONFIG's defaults,
// and the WorkerInit its workers start from.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, loadConfig } from '../../src/server/config.js';
import { POOL_SETTINGS, poolSettings, resolvePoolSettings, workerInit } from '../../src/server/pool-options.js';

describe('pool settings', () => {
  it('a setting left out (or undefined) takes DEFAULT_CONFIG\'s value', () => {
    const s = resolvePoolSettings({ workers: 3, queueSize: undefined });
    expect(s.workers).toBe(3);
    for (const k of POOL_SETTINGS) if (k !== 'workers') expect(s[k]).toEqual(DEFAULT_CONFIG[k]);
  });

  it('poolSettings picks exactly the pool\'s settings out of a configuration', () => {
    const config = loadConfig(['--queue-size', '5', '--batching', 'static', '--batch-rows', '8']);
    const s = poolSettings(config);
    expect(Object.keys(s).sort()).toEqual([...POOL_SETTINGS].sort());
    expect(s).toMatchObject({ queueSize: 5, batching: 'static', batchRows: 8 });
  });

  it('the worker\'s batching block: "on" is continuous, batchRows is maxRows', () => {
    const models = [{ name: 'm', dir: '/m' }];
    const on = workerInit(models, resolvePoolSettings({ batching: 'on', batchRows: 16, maxQueueDelayMs: 3, requestShare: 0.25 }));
    expect(on.batching).toEqual({ mode: 'continuous', maxRows: 16, maxQueueDelayMs: 3, requestShare: 0.25 });
    expect(workerInit(models, resolvePoolSettings({ batching: 'static' })).batching.mode).toBe('static');
    const off = workerInit(models, resolvePoolSettings({}));
    expect(off).toMatchObject({ models, intraOpThreads: DEFAULT_CONFIG.intraOpThreads, ortMemArena: DEFAULT_CONFIG.ortMemArena, maxRowsPerRun: DEFAULT_CONFIG.maxRowsPerRun, solverKernel: 'auto' });
    expect(off.batching.mode).toBe('off');
    expect(off.modelBatching).toEqual({ m: 'off' });
  });

  it('each model\'s mode (#20): its --model-batching entry, else the default, as the worker names modes', () => {
    const models = [{ name: 'a', dir: '/a' }, { name: 'b', dir: '/b' }, { name: 'c', dir: '/c' }];
    const init = workerInit(models, resolvePoolSettings(poolSettings(loadConfig(['--batching', 'static', '--model-batching', 'a=on,b=off']))));
    expect(init.modelBatching).toEqual({ a: 'continuous', b: 'off', c: 'static' });
    expect(init.batching.mode).toBe('static');
  });
});
