import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { isDeqError } from '../../src/errors.js';
import { batchingOf, DEFAULT_CONFIG, FD_LIMITS, fdLimits, loadConfig, SETTINGS } from '../../src/server/config.js';

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

  it('per-model batching (#20): model=mode pairs from the flag or DEQ_MODEL_BATCHING override --batching for the models named', () => {
    const c = loadConfig(['--model-batching', 'fashion-mnist-jr=on, brown-lm-jr = off', '--batching', 'static']);
    expect(c.modelBatching).toEqual({ 'fashion-mnist-jr': 'on', 'brown-lm-jr': 'off' });
    expect(Object.isFrozen(c.modelBatching)).toBe(true);
    expect([batchingOf(c, 'fashion-mnist-jr'), batchingOf(c, 'brown-lm-jr'), batchingOf(c, 'tiny-image')]).toEqual(['on', 'off', 'static']);
    expect(loadConfig([], { DEQ_MODEL_BATCHING: 'tiny-image=static' }).modelBatching).toEqual({ 'tiny-image': 'static' });
    expect(loadConfig(['--model-batching=a=on'], { DEQ_MODEL_BATCHING: 'b=on' }).modelBatching).toEqual({ a: 'on' });
    expect(DEFAULT_CONFIG.modelBatching).toEqual({});
    expect(batchingOf(DEFAULT_CONFIG, 'fashion-mnist-jr')).toBe('off');
    expect(batchingOf(DEFAULT_CONFIG, 'toString')).toBe('off');
  });

  it('per-model batching: a bad mode, a pair without "=", a model named twice fail at startup, naming the setting and the model', () => {
    const bad = configError(() => loadConfig(['--model-batching', 'fashion-mnist-jr=on,brown-lm-jr=fast']));
    expect(bad).toMatchObject({ code: 'DEQ_ERR_CONFIG_INVALID', setting: '--model-batching' });
    expect(bad.message).toMatch(/brown-lm-jr/);
    expect(bad.message).toMatch(/on, static, off/);
    expect(configError(() => loadConfig([], { DEQ_MODEL_BATCHING: 'brown-lm-jr=fast' }))).toMatchObject({ setting: 'DEQ_MODEL_BATCHING' });
    const pair = configError(() => loadConfig(['--model-batching', 'brown-lm-jr']));
    expect(pair).toMatchObject({ setting: '--model-batching' });
    expect(pair.message).toMatch(/"brown-lm-jr" is not model=value/);
    expect(configError(() => loadConfig(['--model-batching', '=on'])).setting).toBe('--model-batching');
    expect(configError(() => loadConfig(['--model-batching', 'a=on,a=off'])).message).toMatch(/a is named twice/);
    expect(configError(() => loadConfig([], {}, { modelBatching: { a: 'sometimes' as 'on' } })).message).toMatch(/a: .*allowed: on, static, off/);
  });

  it('has a flag and an environment variable for every setting', () => {
    expect(SETTINGS.map((s) => s.key).sort()).toEqual(Object.keys(DEFAULT_CONFIG).sort());
    for (const s of SETTINGS) {
      expect(s.flag).toMatch(/^--[a-z-]+$/);
      expect(s.env).toMatch(/^DEQ_[A-Z_]+$/);
    }
  });

  it('edge limits (#22): a budget below one request, a cap above the descriptors, and bad depths fail at startup, named', () => {
    expect(configError(() => loadConfig(['--body-budget', String(1 << 20)]))).toMatchObject({ code: 'DEQ_ERR_CONFIG_INVALID', setting: '--body-budget' });
    expect(configError(() => loadConfig([], { DEQ_IMAGE_LIMIT: String(100 << 20) })).setting).toBe('--body-budget');
    expect(configError(() => loadConfig(['--max-json-depth', '2'])).setting).toBe('--max-json-depth');
    expect(configError(() => loadConfig([], { DEQ_HEADERS_TIMEOUT_MS: '600000' })).setting).toBe('DEQ_HEADERS_TIMEOUT_MS');
    expect(configError(() => loadConfig(['--max-connections', '0'])).setting).toBe('--max-connections');
    if (FD_LIMITS.openFiles !== null) {
      const over = configError(() => loadConfig(['--max-connections', String(FD_LIMITS.maxConnections + 1)]));
      expect(over.setting).toBe('--max-connections');
      expect(over.message).toMatch(/ulimit -n/);
      expect(loadConfig(['--max-connections', String(FD_LIMITS.maxConnections)]).maxConnections).toBe(FD_LIMITS.maxConnections);
    }
  });

  it('derives the connection cap from the open-file limit, keeping descriptors for the process and probes', () => {
    expect(fdLimits(256)).toMatchObject({ reserved: 64, maxConnections: 176, defaultMaxConnections: 176 });
    expect(fdLimits(1024)).toMatchObject({ reserved: 128, maxConnections: 880, defaultMaxConnections: 880 });
    expect(fdLimits(1_048_576).defaultMaxConnections).toBe(4096);
    expect(DEFAULT_CONFIG.maxConnections).toBe(FD_LIMITS.defaultMaxConnections);
  });
});
