import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { isDeqError } from '../../src/errors.js';
import { DEFAULT_CONFIG, loadConfig, SETTINGS } from '../../src/server/config.js';

function configError(fn: () => unknown): { code: string; message: string; setting: unknown } {
  try {
    fn();
  } catch (err) {
    if (!isDeqError(err)) throw err;
    return { code: err.code, message: err.message, setting: err.details?.setting };
  }
  throw new Error('expected DEQ_ERR_CONFIG_INVALID');
}

describe('loadConfig', () => {
  it('defaults do not oversubscribe the cores', () => {
    expect(DEFAULT_CONFIG.workers * DEFAULT_CONFIG.intraOpThreads).toBeLessThanOrEqual(availableParallelism());
    expect(loadConfig()).toEqual(DEFAULT_CONFIG);
  });

  it('takes --ep for --providers and --models for --models-dir, as the other commands spell them', () => {
    expect(loadConfig(['--ep', 'webgpu,cpu', '--models', 'elsewhere'])).toMatchObject({ providers: ['webgpu', 'cpu'], modelsDir: 'elsewhere' });
    expect(configError(() => loadConfig(['--ep', 'tpu']))).toMatchObject({ code: 'DEQ_ERR_CONFIG_INVALID', setting: '--providers' });
  });

  it('reads DEQ_* variables, and flags override them', () => {
    const c = loadConfig(['--port', '9000', '--api-keys=aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb', '--open-health', 'false'], { DEQ_PORT: '8000', DEQ_WORKERS: '2', DEQ_PROVIDERS: 'cuda,cpu', DEQ_ON_DEADLINE: 'best-effort' });
    expect(c).toMatchObject({ port: 9000, workers: 2, providers: ['cuda', 'cpu'], onDeadline: 'best-effort', openHealth: false, apiKeys: ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb'] });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.providers)).toBe(true);
  });

  it('names the setting at fault', () => {
    expect(configError(() => loadConfig(['--port', '70000']))).toMatchObject({ code: 'DEQ_ERR_CONFIG_INVALID', setting: '--port' });
    expect(configError(() => loadConfig([], { DEQ_WORKERS: 'many' }))).toMatchObject({ code: 'DEQ_ERR_CONFIG_INVALID', setting: 'DEQ_WORKERS' });
    expect(configError(() => loadConfig([], { DEQ_PROVIDERS: 'tpu' }))).toMatchObject({ setting: 'DEQ_PROVIDERS' });
    expect(configError(() => loadConfig(['--on-deadline', 'maybe']))).toMatchObject({ setting: '--on-deadline' });
    expect(configError(() => loadConfig(['--solver-kernel', 'avx']))).toMatchObject({ setting: '--solver-kernel' });
    expect(loadConfig([], { DEQ_SOLVER_KERNEL: 'wasm-f32' }).solverKernel).toBe('wasm-f32');
    expect(configError(() => loadConfig(['--bogus', '1']))).toMatchObject({ setting: '--bogus' });
    expect(configError(() => loadConfig(['--queue-size']))).toMatchObject({ setting: '--queue-size' });
    expect(configError(() => loadConfig(['--tol-min', '0.5', '--tol-max', '0.1'])).code).toBe('DEQ_ERR_CONFIG_INVALID');
    const short = configError(() => loadConfig(['--api-keys', 'short']));
    expect(short.setting).toBe('--api-keys');
    expect(short.message).not.toContain('short');
  });

  it('has a flag and an environment variable for every setting', () => {
    expect(SETTINGS.map((s) => s.key).sort()).toEqual(Object.keys(DEFAULT_CONFIG).sort());
    for (const s of SETTINGS) {
      expect(s.flag).toMatch(/^--[a-z-]+$/);
      expect(s.env).toMatch(/^DEQ_[A-Z_]+$/);
    }
  });
});
