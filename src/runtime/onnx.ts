// The only module that imports onnxruntime-node. Everything else sees the
// small surface below, so a change of runtime (or of its quirks) stays here.
import * as ort from 'onnxruntime-node';
import { DeqError } from '../errors.js';

// ONNX Runtime's own logger prints a failed provider attempt as coloured native lines on stderr.
// OnnxGraph.load reports each failure itself (DEQ_ERR_PROVIDER_UNAVAILABLE, or `fallbacks` when a
// later provider loads), so only fatal native messages are let through. Set before the first session.
ort.env.logLevel = 'fatal';

/** Execution providers deq-serve knows how to ask for, in the user's order of preference. */
export type ExecutionProvider = 'cuda' | 'webgpu' | 'cpu';
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = Object.freeze(['cuda', 'webgpu', 'cpu']);

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';

export interface SessionConfig {
  /**
   * Ordered preference. The first that loads is used; a later entry is the
   * fallback. A list with one entry never falls back: if it cannot load, loading fails.
   */
  providers: readonly ExecutionProvider[];
  intraOpThreads: number;
  interOpThreads: number;
  graphOptimization: GraphOptimization;
  /** CUDA/WebGPU device ordinal. */
  deviceId?: number;
  /**
   * ONNX Runtime's CPU memory arena. On, it pools memory and keeps the pool at
   * the largest shape seen; off, each run's buffers go back to the allocator
   * (docs/reliability.md has the RSS and latency measured both ways).
   */
  cpuMemArena?: boolean;
  /** Allocation plans cached per input shape (memory grows with the shapes seen). */
  memPattern?: boolean;
}

export const DEFAULT_SESSION_CONFIG: Readonly<SessionConfig> = Object.freeze({
  providers: Object.freeze(['cpu'] as ExecutionProvider[]),
  intraOpThreads: 1,
  interOpThreads: 1,
  graphOptimization: 'all',
});

export type Tensor = ort.Tensor;
export type TensorType = 'float32' | 'int64';
type TensorArray = Float32Array | BigInt64Array;

/** Wraps a typed array without copying. */
export function createTensor(type: TensorType, data: TensorArray, dims: readonly number[]): Tensor {
  return new ort.Tensor(type, data, dims);
}

/** Providers this build of onnxruntime-node can at least attempt (cpu and webgpu are bundled). */
export function bundledProviders(): string[] {
  return ort.listSupportedBackends().filter((b) => b.bundled).map((b) => b.name);
}

/** One loaded ONNX graph and the provider it runs on. */
export class OnnxGraph {
  readonly path: string;
  readonly provider: ExecutionProvider;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Per-input declared dims as ONNX states them (symbolic dims are strings). */
  readonly inputShapes: ReadonlyMap<string, readonly (number | string)[]>;
  /** Why each provider before `provider` in the preference list could not load ("cuda: …"). */
  readonly fallbacks: readonly string[];
  #session: ort.InferenceSession | null;

  private constructor(path: string, provider: ExecutionProvider, session: ort.InferenceSession, fallbacks: readonly string[]) {
    this.path = path;
    this.provider = provider;
    this.fallbacks = fallbacks;
    this.#session = session;
    this.inputNames = session.inputNames;
    this.outputNames = session.outputNames;
    const shapes = new Map<string, readonly (number | string)[]>();
    for (const meta of session.inputMetadata) {
      if (meta.isTensor) shapes.set(meta.name, meta.shape);
    }
    this.inputShapes = shapes;
  }

  /**
   * Creates a session from the graph's bytes (`label` names it in errors) on the first provider in `config.providers` that loads.
   * Throws DEQ_ERR_PROVIDER_UNAVAILABLE naming every provider tried and why it failed.
   */
  static async load(source: Uint8Array, label: string, config: SessionConfig, options: GraphOptions = {}): Promise<OnnxGraph> {
    const path = label;
    const failures: string[] = [];
    for (const provider of config.providers) {
      try {
        const session = await ort.InferenceSession.create(source, { ...sessionOptions(provider, config), ...outputLocations(options.deviceOutputs) });
        return new OnnxGraph(path, provider, session, failures);
      } catch (err) {
        failures.push(`${provider}: ${firstLine(err)}`);
      }
    }
    throw new DeqError('DEQ_ERR_PROVIDER_UNAVAILABLE',
      `${path}: no execution provider in [${config.providers.join(', ')}] could load (${failures.join('; ')})`,
      { providers: [...config.providers], failures });
  }

  /**
   * Runs the graph. `fetches` names the outputs wanted; a Tensor value is a
   * preallocated destination that ORT writes into (no copy on the way back).
   */
  async run(feeds: Record<string, Tensor>, fetches: Record<string, Tensor | null>): Promise<Record<string, Tensor>> {
    const session = this.#session;
    if (!session) throw new DeqError('DEQ_ERR_MODEL_NOT_READY', `${this.path}: session already released`);
    try {
      return await session.run(feeds, fetches);
    } catch (err) {
      // Describe the feeds (never their data) so a shape mismatch is diagnosable.
      const described = Object.entries(feeds).map(([k, t]) => `${k}: ${t.type}[${t.dims.join(',')}]`).join(', ');
      throw new DeqError('DEQ_ERR_ONNX_RUN', `${this.path}: ${firstLine(err)} (feeds ${described})`);
    }
  }

  /** Frees the native session. Safe to call twice. */
  async release(): Promise<void> {
    const session = this.#session;
    this.#session = null;
    if (session) await session.release();
  }
}

/** Per-graph load options. */
export interface GraphOptions {
  /**
   * Outputs left on the provider's device (ONNX Runtime IO binding, 'gpu-buffer') rather than
   * copied to the host: the run returns opaque tensors that only another run can read. The CPU
   * provider returns them on the host as usual. onnxruntime-node 1.30 aborts the process on
   * getData() or dispose() of such a tensor, so nothing here calls either (docs/gpu.md).
   */
  deviceOutputs?: readonly string[];
}

function outputLocations(names: readonly string[] | undefined): Pick<ort.InferenceSession.SessionOptions, 'preferredOutputLocation'> {
  if (!names?.length) return {};
  return { preferredOutputLocation: Object.fromEntries(names.map((name) => [name, 'gpu-buffer' as const])) };
}

const OPT_LEVEL: Record<GraphOptimization, ort.InferenceSession.SessionOptions['graphOptimizationLevel']> = {
  disabled: 'disabled', basic: 'basic', extended: 'extended', all: 'all',
};

function sessionOptions(provider: ExecutionProvider, config: SessionConfig): ort.InferenceSession.SessionOptions {
  const ep: ort.InferenceSession.ExecutionProviderConfig = config.deviceId !== undefined && provider !== 'cpu'
    ? { name: provider, deviceId: config.deviceId } as ort.InferenceSession.ExecutionProviderConfig
    : provider;
  return {
    executionProviders: [ep],
    intraOpNumThreads: config.intraOpThreads,
    interOpNumThreads: config.interOpThreads,
    graphOptimizationLevel: OPT_LEVEL[config.graphOptimization],
    executionMode: 'sequential',
    ...(config.cpuMemArena !== undefined ? { enableCpuMemArena: config.cpuMemArena } : {}),
    ...(config.memPattern !== undefined ? { enableMemPattern: config.memPattern } : {}),
    // 3 = error: a failed provider attempt is reported by us, not as native stderr noise.
    logSeverityLevel: 3,
  };
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].slice(0, 300);
}
