import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Ajv } from 'ajv';
import { DeqError } from '../errors.js';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/index.js';
import { SOLVER_KERNELS, type SolverKernel } from '../solver/index.js';

/** `on`: continuous batching of solver iterations across requests; `static`: batches formed once; `off`: one request per worker at a time. */
export type BatchingSetting = 'on' | 'static' | 'off';

/** What happens when a request's deadline passes during its solve. */
export type DeadlinePolicy = 'error' | 'best-effort';

/** The server's effective configuration (validated, frozen). */
export interface ServerConfig {
  port: number;
  host: string;
  modelsDir: string;
  providers: ExecutionProvider[];
  workers: number;
  intraOpThreads: number;
  maxIterCap: number;
  tolMin: number;
  tolMax: number;
  queueSize: number;
  requestTimeoutMs: number;
  onDeadline: DeadlinePolicy;
  bodyLimitBytes: number;
  imageLimitBytes: number;
  maxImagePixels: number;
  maxTextChars: number;
  maxTexts: number;
  maxBatch: number;
  maxOutputElements: number;
  /** Most cost (batch × max_iter × state size) one request may have; 0: no limit but the others (server/admission.ts). */
  maxRequestCost: number;
  /** Cost a model's requests together may have on the workers at once; 0: from the model (admission.ts modelBudget). */
  modelCostBudget: number;
  maxScoreWindows: number;
  scoreBatch: number;
  maxRowsPerRun: number;
  ortMemArena: boolean;
  ortMemPattern: boolean;
  /** `auto`: each model's own (its manifest's solver.precision); a kernel name: every model. */
  solverKernel: SolverKernel | 'auto';
  /** The default batching mode: every model's, unless modelBatching names it. */
  batching: BatchingSetting;
  /** Per model, a batching mode other than the default (Triton's per-model dynamic_batching); batchingOf reads it. */
  modelBatching: Readonly<Record<string, BatchingSetting>>;
  batchRows: number;
  maxQueueDelayMs: number;
  requestShare: number;
  topK: number;
  apiKeys: string[];
  openHealth: boolean;
  shutdownGraceMs: number;
  retryAfterS: number;
  /** Request-body bytes all requests together may hold in memory (issue #22). */
  bodyBudgetBytes: number;
  /** Longest gap between two chunks of a request body before 408. */
  bodyTimeoutMs: number;
  /** Time a connection gets to send its request headers. */
  headersTimeoutMs: number;
  /** How long an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number;
  /** Open connections before idle ones are closed and new ones may only reach health routes. */
  maxConnections: number;
  /** Deepest nesting of arrays and objects a JSON body may have. */
  maxJsonDepth: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** GET /openapi.json: the OpenAPI 3.1 document of the routes. */
  openapi: boolean;
  /** /docs: interactive docs (Swagger UI) over /openapi.json. */
  docs: boolean;
  /** /playground: the page that shows models, predictions and solves converging. */
  playground: boolean;
  /** Fixed-point response cache budget in bytes; 0: off. */
  cacheBytes: number;
  /** Models the cache serves; empty: every model (when cacheBytes > 0). */
  cacheModels: string[];
  /** Stateful sequences (sequence_id): most live at once, bytes of state, idle timeout. */
  maxSequences: number;
  sequenceBytes: number;
  sequenceIdleMs: number;
  /** OIP v2 over gRPC (inference.GRPCInferenceService) on its own port; -1: off. */
  grpcPort: number;
  /** Triton's --model-control-mode: `none` (models fixed at startup), `explicit` (the repository API), `poll` (that, and the folder watched). */
  modelControl: 'none' | 'explicit' | 'poll';
  /** Poll mode: how often the models folder is checked for new, changed and removed bundles. */
  repositoryPollMs: number;
}

/** `map`: comma-separated name=value pairs (an object). */
type Kind = 'int' | 'number' | 'string' | 'list' | 'bool' | 'map';

interface Setting {
  key: keyof ServerConfig;
  flag: string;
  env: string;
  kind: Kind;
  help: string;
}

/** Cores the defaults are sized for. */
const CORES = availableParallelism();

/** Connections past --max-connections kept for health probes (answered; other routes get 503). */
export const PROBE_HEADROOM = 16;

/** Default cap where many descriptors are allowed: ~3.5 KB each idle, so 4096 is ~14 MB. */
const DEFAULT_MAX_CONNECTIONS = 4096;

/** The open-file limit (`ulimit -n`) and the --max-connections it allows. */
export const FD_LIMITS = fdLimits(readOpenFileLimit());

/**
 * The one defaults object. Workers × intra-op threads stays ≤ the cores: one worker
 * per core. Leaving a core to the HTTP thread lost once PNG uploads stopped going
 * through libvips (docs/server.md, "Workers and threads": 2 × 1 against 1 × 1 on 2 cores).
 */
export const DEFAULT_CONFIG: Readonly<ServerConfig> = Object.freeze({
  port: 8080,
  host: '127.0.0.1',
  modelsDir: 'models',
  providers: ['cpu'] as ExecutionProvider[],
  workers: Math.max(1, Math.min(8, CORES)),
  intraOpThreads: 1,
  maxIterCap: 500,
  tolMin: 1e-8,
  tolMax: 1,
  queueSize: 64,
  requestTimeoutMs: 30_000,
  onDeadline: 'error',
  bodyLimitBytes: 1 << 20,
  imageLimitBytes: 10 << 20,
  maxImagePixels: 4096 * 4096,
  maxTextChars: 20_000,
  maxTexts: 32,
  maxBatch: 64,
  maxOutputElements: 1 << 20,
  maxRequestCost: 0,
  modelCostBudget: 0,
  maxScoreWindows: 512,
  scoreBatch: 2,
  maxRowsPerRun: 128,
  ortMemArena: true,
  ortMemPattern: true,
  // Each model's own: float64 arithmetic as the reference does it, unless its manifest declares
  // solver.precision "float32". wasm-f32 is faster, but an ill-conditioned solve amplifies its
  // rounding (fashion-mnist-plain: z* off by up to 4% on some images; docs/solver.md, "Kernel
  // precision"), so it is the model's author who turns it on, after checking, not the server.
  solverKernel: 'auto',
  // Measured on 2 cores (docs/server.md, "Continuous batching"): batching wins at high image
  // concurrency and loses on single requests and on short /score texts (their windows, padded to a
  // shared length where the bundle declares state.pad, fill few rows per run), so it is an opt-in.
  // No kind of model has a measured gain at one to four clients (docs/benchmarks.md), so no model
  // gets another default: --model-batching turns it on for the models whose load shows a gain.
  batching: 'off',
  modelBatching: {},
  batchRows: 32,
  maxQueueDelayMs: 0,
  requestShare: 0.5,
  topK: 5,
  apiKeys: [],
  openHealth: true,
  shutdownGraceMs: 10_000,
  retryAfterS: 1,
  // Four largest uploads at once; a fifth waits (503 + Retry-After) rather than growing RSS.
  // nginx holds 16 KiB per body in memory and spools the rest to disk (docs/reliability.md).
  bodyBudgetBytes: 64 << 20,
  bodyTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: FD_LIMITS.defaultMaxConnections,
  // v2 tensors nest one level per dimension (shape has at most 8) under 3 levels of envelope.
  maxJsonDepth: 32,
  logLevel: 'info',
  openapi: true,
  docs: true,
  playground: true,
  cacheBytes: 0,
  cacheModels: [],
  maxSequences: 1024,
  sequenceBytes: 256 << 20,
  sequenceIdleMs: 60_000,
  grpcPort: -1,
  modelControl: 'none',
  repositoryPollMs: 5000,
});

/** Every setting: its flag, its environment variable and what it means (docs/server.md mirrors this). */
export const SETTINGS: readonly Setting[] = Object.freeze([
  { key: 'port', flag: '--port', env: 'DEQ_PORT', kind: 'int', help: 'TCP port (0 = any free port)' },
  { key: 'host', flag: '--host', env: 'DEQ_HOST', kind: 'string', help: 'interface to listen on' },
  { key: 'modelsDir', flag: '--models-dir', env: 'DEQ_MODELS_DIR', kind: 'string', help: 'folder whose subfolders with a manifest.json are served, or one bundle folder to serve alone' },
  { key: 'providers', flag: '--providers', env: 'DEQ_PROVIDERS', kind: 'list', help: 'execution providers in order of preference (cuda, webgpu, cpu)' },
  { key: 'workers', flag: '--workers', env: 'DEQ_WORKERS', kind: 'int', help: 'solver worker threads, each with its own sessions' },
  { key: 'intraOpThreads', flag: '--threads', env: 'DEQ_THREADS', kind: 'int', help: 'ONNX Runtime intra-op threads per worker' },
  { key: 'maxIterCap', flag: '--max-iter-cap', env: 'DEQ_MAX_ITER_CAP', kind: 'int', help: 'largest max_iter a request may ask for' },
  { key: 'tolMin', flag: '--tol-min', env: 'DEQ_TOL_MIN', kind: 'number', help: 'smallest tol a request may ask for' },
  { key: 'tolMax', flag: '--tol-max', env: 'DEQ_TOL_MAX', kind: 'number', help: 'largest tol a request may ask for' },
  { key: 'queueSize', flag: '--queue-size', env: 'DEQ_QUEUE_SIZE', kind: 'int', help: 'requests waiting per model before 503 DEQ_ERR_QUEUE_FULL' },
  { key: 'requestTimeoutMs', flag: '--request-timeout-ms', env: 'DEQ_REQUEST_TIMEOUT_MS', kind: 'int', help: 'default request deadline; a request may ask for a shorter one (deadline_ms)' },
  { key: 'onDeadline', flag: '--on-deadline', env: 'DEQ_ON_DEADLINE', kind: 'string', help: '"error": 504 DEQ_ERR_DEADLINE_EXCEEDED; "best-effort": answer with the best iterate, marked not converged' },
  { key: 'bodyLimitBytes', flag: '--body-limit', env: 'DEQ_BODY_LIMIT', kind: 'int', help: 'largest JSON body in bytes' },
  { key: 'imageLimitBytes', flag: '--image-limit', env: 'DEQ_IMAGE_LIMIT', kind: 'int', help: 'largest image upload in bytes' },
  { key: 'maxImagePixels', flag: '--max-image-pixels', env: 'DEQ_MAX_IMAGE_PIXELS', kind: 'int', help: 'largest width × height an image header may declare (decompression bombs)' },
  { key: 'maxTextChars', flag: '--max-text-chars', env: 'DEQ_MAX_TEXT_CHARS', kind: 'int', help: 'longest text /score accepts, in characters' },
  { key: 'maxTexts', flag: '--max-texts', env: 'DEQ_MAX_TEXTS', kind: 'int', help: 'most texts in one /score request' },
  { key: 'maxBatch', flag: '--max-batch', env: 'DEQ_MAX_BATCH', kind: 'int', help: 'largest batch dimension in one v2 infer request' },
  { key: 'maxOutputElements', flag: '--max-output-elements', env: 'DEQ_MAX_OUTPUT_ELEMENTS', kind: 'int', help: 'most tensor elements one v2 response may hold (checked before solving: 413 DEQ_ERR_OUTPUT_TOO_LARGE)' },
  { key: 'maxRequestCost', flag: '--max-request-cost', env: 'DEQ_MAX_REQUEST_COST', kind: 'int', help: 'most cost one request may have, in state-value iterations (batch × max_iter × state size per sample): 413 DEQ_ERR_TOO_COSTLY (0 = no limit beyond --max-batch and --max-iter-cap)' },
  { key: 'modelCostBudget', flag: '--model-cost-budget', env: 'DEQ_MODEL_COST_BUDGET', kind: 'int', help: 'cost one model\'s requests together may have on the workers at once while other models are served; past it they wait, leaving workers to the other models (0 = workers × max-batch × the model\'s own max_iter × its state size)' },
  { key: 'maxScoreWindows', flag: '--max-score-windows', env: 'DEQ_MAX_SCORE_WINDOWS', kind: 'int', help: 'most context windows one /score request may cost, over all its texts (413 DEQ_ERR_TOO_COSTLY)' },
  { key: 'batching', flag: '--batching', env: 'DEQ_BATCHING', kind: 'string', help: 'every model\'s batching unless --model-batching names it. "on": requests join running solves at iteration boundaries and leave when they stop (continuous batching); "static": a batch is formed once and answered when its slowest member stops; "off": one request per worker at a time' },
  { key: 'modelBatching', flag: '--model-batching', env: 'DEQ_MODEL_BATCHING', kind: 'map', help: 'batching per model, overriding --batching for the models named: comma-separated model=mode pairs (on, static, off), e.g. fashion-mnist-jr=on,brown-lm-jr=off; every name must be a served model' },
  { key: 'batchRows', flag: '--batch-rows', env: 'DEQ_BATCH_ROWS', kind: 'int', help: 'most samples in one cell run when batching' },
  { key: 'maxQueueDelayMs', flag: '--max-queue-delay-ms', env: 'DEQ_MAX_QUEUE_DELAY_MS', kind: 'number', help: 'how long an idle solve waits for more requests before it starts (batching)' },
  { key: 'requestShare', flag: '--request-share', env: 'DEQ_REQUEST_SHARE', kind: 'number', help: 'largest share of --batch-rows one request may hold (continuous batching), so small requests join at once' },
  { key: 'scoreBatch', flag: '--score-batch', env: 'DEQ_SCORE_BATCH', kind: 'int', help: 'windows /score solves together in one worker call' },
  { key: 'maxRowsPerRun', flag: '--max-rows-per-run', env: 'DEQ_MAX_ROWS_PER_RUN', kind: 'int', help: 'largest batch × sequence length a worker runs at once; bigger v2 batches run in slices (bounds ONNX Runtime memory)' },
  { key: 'ortMemArena', flag: '--ort-mem-arena', env: 'DEQ_ORT_MEM_ARENA', kind: 'bool', help: 'ONNX Runtime CPU memory arena (on: keeps memory at the largest shape seen)' },
  { key: 'ortMemPattern', flag: '--ort-mem-pattern', env: 'DEQ_ORT_MEM_PATTERN', kind: 'bool', help: 'ONNX Runtime memory patterns (allocation plans cached per input shape)' },
  { key: 'solverKernel', flag: '--solver-kernel', env: 'DEQ_SOLVER_KERNEL', kind: 'string', help: '"auto": each model\'s own (float32 SIMD where its manifest declares solver.precision "float32", else float64); "wasm": SIMD kernels in float64 arithmetic (iterates as the reference) for every model; "wasm-f32": float32 arithmetic, faster; "js": the scalar reference' },
  { key: 'topK', flag: '--top-k', env: 'DEQ_TOP_K', kind: 'int', help: 'labels returned by /classify unless the request asks (top_k)' },
  { key: 'apiKeys', flag: '--api-keys', env: 'DEQ_API_KEYS', kind: 'list', help: 'comma-separated bearer keys; empty = no authentication' },
  { key: 'openHealth', flag: '--open-health', env: 'DEQ_OPEN_HEALTH', kind: 'bool', help: 'health and /metrics need no API key' },
  { key: 'shutdownGraceMs', flag: '--shutdown-grace-ms', env: 'DEQ_SHUTDOWN_GRACE_MS', kind: 'int', help: 'time in-flight requests get to finish after SIGTERM' },
  { key: 'retryAfterS', flag: '--retry-after-s', env: 'DEQ_RETRY_AFTER_S', kind: 'int', help: 'Retry-After seconds sent with 503 DEQ_ERR_QUEUE_FULL and DEQ_ERR_OVERLOADED' },
  { key: 'bodyBudgetBytes', flag: '--body-budget', env: 'DEQ_BODY_BUDGET', kind: 'int', help: 'request-body bytes all requests together may hold; past it a request gets 503 DEQ_ERR_OVERLOADED with Retry-After before its body is read (a request is charged its Content-Length, or its route\'s limit when chunked)' },
  { key: 'bodyTimeoutMs', flag: '--body-timeout-ms', env: 'DEQ_BODY_TIMEOUT_MS', kind: 'int', help: 'longest wait for the next chunk of a request body before 408 DEQ_ERR_REQUEST_TIMEOUT (stalled uploads)' },
  { key: 'headersTimeoutMs', flag: '--headers-timeout-ms', env: 'DEQ_HEADERS_TIMEOUT_MS', kind: 'int', help: 'time a connection gets to send its request headers, idle new connections included' },
  { key: 'keepAliveTimeoutMs', flag: '--keep-alive-timeout-ms', env: 'DEQ_KEEP_ALIVE_TIMEOUT_MS', kind: 'int', help: 'how long an idle keep-alive connection stays open' },
  { key: 'maxConnections', flag: '--max-connections', env: 'DEQ_MAX_CONNECTIONS', kind: 'int', help: 'open connections before idle ones are closed to make room; past it, new connections may only reach health routes (16 more), then are refused. Default: from the open-file limit (ulimit -n), at most 4096' },
  { key: 'maxJsonDepth', flag: '--max-json-depth', env: 'DEQ_MAX_JSON_DEPTH', kind: 'int', help: 'deepest nesting of arrays and objects in a JSON body (400 DEQ_ERR_INVALID_INPUT before parsing)' },
  { key: 'logLevel', flag: '--log-level', env: 'DEQ_LOG_LEVEL', kind: 'string', help: 'pino log level' },
  { key: 'openapi', flag: '--openapi', env: 'DEQ_OPENAPI', kind: 'bool', help: 'serve the OpenAPI 3.1 document at /openapi.json' },
  { key: 'docs', flag: '--docs', env: 'DEQ_DOCS', kind: 'bool', help: 'serve interactive docs (Swagger UI) at /docs; needs --openapi' },
  { key: 'playground', flag: '--playground', env: 'DEQ_PLAYGROUND', kind: 'bool', help: 'serve the playground page at /playground' },
  { key: 'cacheBytes', flag: '--cache-bytes', env: 'DEQ_CACHE_BYTES', kind: 'int', help: 'fixed-point response cache budget in bytes, LRU (0 = off): a repeated request (same model, version, input bytes and solver settings) is answered without a solve' },
  { key: 'cacheModels', flag: '--cache-models', env: 'DEQ_CACHE_MODELS', kind: 'list', help: 'comma-separated models the response cache serves; empty = every model' },
  { key: 'maxSequences', flag: '--max-sequences', env: 'DEQ_MAX_SEQUENCES', kind: 'int', help: 'most live stateful sequences (sequence_id) kept; the least recently used makes room (0 = sequences off)' },
  { key: 'sequenceBytes', flag: '--sequence-bytes', env: 'DEQ_SEQUENCE_BYTES', kind: 'int', help: 'bytes of fixed-point state the live sequences may hold' },
  { key: 'sequenceIdleMs', flag: '--sequence-idle-ms', env: 'DEQ_SEQUENCE_IDLE_MS', kind: 'int', help: 'a sequence unused this long is forgotten' },
  { key: 'modelControl', flag: '--model-control', env: 'DEQ_MODEL_CONTROL', kind: 'string', help: '"none": the models found at startup, fixed; "explicit": the repository API (POST /v2/repository/index, …/models/{name}/load, …/unload) loads, reloads and unloads bundles without a restart (needs --api-keys); "poll": that, and the models folder checked every --repository-poll-ms' },
  { key: 'repositoryPollMs', flag: '--repository-poll-ms', env: 'DEQ_REPOSITORY_POLL_MS', kind: 'int', help: 'with --model-control poll: how often the models folder is checked for new, changed and removed bundles' },
  { key: 'grpcPort', flag: '--grpc-port', env: 'DEQ_GRPC_PORT', kind: 'int', help: 'serve the Open Inference Protocol over gRPC (inference.GRPCInferenceService) on this port, on --host (-1 = off, 0 = any free port); KServe and Triton use 8081 and 8001' },
]);

const positiveInt = { type: 'integer', minimum: 1 } as const;

const BATCHING_MODES: BatchingSetting[] = ['on', 'static', 'off'];

const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: SETTINGS.map((s) => s.key),
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    host: { type: 'string', minLength: 1 },
    modelsDir: { type: 'string', minLength: 1 },
    providers: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...EXECUTION_PROVIDERS] } },
    workers: { type: 'integer', minimum: 1, maximum: 256 },
    intraOpThreads: { type: 'integer', minimum: 1, maximum: 256 },
    maxIterCap: { type: 'integer', minimum: 1, maximum: 100_000 },
    tolMin: { type: 'number', exclusiveMinimum: 0 },
    tolMax: { type: 'number', exclusiveMinimum: 0 },
    queueSize: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    requestTimeoutMs: positiveInt,
    onDeadline: { enum: ['error', 'best-effort'] },
    bodyLimitBytes: { type: 'integer', minimum: 1024 },
    imageLimitBytes: { type: 'integer', minimum: 1024 },
    maxImagePixels: positiveInt,
    maxTextChars: positiveInt,
    maxTexts: positiveInt,
    maxBatch: positiveInt,
    maxOutputElements: positiveInt,
    maxRequestCost: { type: 'integer', minimum: 0 },
    modelCostBudget: { type: 'integer', minimum: 0 },
    maxScoreWindows: positiveInt,
    scoreBatch: { type: 'integer', minimum: 1, maximum: 4096 },
    batching: { enum: BATCHING_MODES },
    modelBatching: { type: 'object', propertyNames: { minLength: 1 }, additionalProperties: { enum: BATCHING_MODES } },
    batchRows: { type: 'integer', minimum: 1, maximum: 4096 },
    maxQueueDelayMs: { type: 'number', minimum: 0, maximum: 10_000 },
    requestShare: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    maxRowsPerRun: positiveInt,
    ortMemArena: { type: 'boolean' },
    ortMemPattern: { type: 'boolean' },
    solverKernel: { enum: ['auto', ...SOLVER_KERNELS] },
    topK: positiveInt,
    apiKeys: { type: 'array', items: { type: 'string', minLength: 16, pattern: '^[\\x21-\\x7e]+$' } },
    openHealth: { type: 'boolean' },
    shutdownGraceMs: { type: 'integer', minimum: 0 },
    retryAfterS: { type: 'integer', minimum: 0 },
    bodyBudgetBytes: { type: 'integer', minimum: 1024 },
    bodyTimeoutMs: { type: 'integer', minimum: 100 },
    headersTimeoutMs: { type: 'integer', minimum: 100 },
    keepAliveTimeoutMs: { type: 'integer', minimum: 100 },
    maxConnections: { type: 'integer', minimum: 1 },
    maxJsonDepth: { type: 'integer', minimum: 4, maximum: 1000 },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    openapi: { type: 'boolean' },
    docs: { type: 'boolean' },
    playground: { type: 'boolean' },
    cacheBytes: { type: 'integer', minimum: 0, maximum: 2 ** 40 },
    cacheModels: { type: 'array', uniqueItems: true, items: { type: 'string', minLength: 1 } },
    maxSequences: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    sequenceBytes: { type: 'integer', minimum: 0, maximum: 2 ** 40 },
    sequenceIdleMs: positiveInt,
    grpcPort: { type: 'integer', minimum: -1, maximum: 65535 },
    modelControl: { enum: ['none', 'explicit', 'poll'] },
    repositoryPollMs: { type: 'integer', minimum: 100, maximum: 3_600_000 },
  },
} as const;

/** Other spellings accepted on the command line: `--ep` as every other command calls the providers. */
export const FLAG_ALIASES: Readonly<Record<string, keyof ServerConfig>> = Object.freeze({ '--models': 'modelsDir', '--ep': 'providers' });

const validate = new Ajv({ allErrors: false, strict: false }).compile<ServerConfig>(CONFIG_SCHEMA);

/**
 * Builds the configuration from defaults, then `DEQ_*` environment variables,
 * then flags (`--port 8080` or `--port=8080`), then `overrides`. Throws
 * DEQ_ERR_CONFIG_INVALID naming the flag or variable at fault.
 */
export function loadConfig(argv: readonly string[] = [], env: NodeJS.ProcessEnv = {}, overrides: Partial<ServerConfig> = {}): Readonly<ServerConfig> {
  const raw: Record<string, unknown> = { ...DEFAULT_CONFIG, providers: [...DEFAULT_CONFIG.providers], apiKeys: [] };
  const origin = new Map<string, string>();
  for (const s of SETTINGS) {
    const v = env[s.env];
    if (v !== undefined && v !== '') {
      raw[s.key] = coerce(s, v, s.env);
      origin.set(s.key, s.env);
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const s = SETTINGS.find((x) => x.flag === flag) ?? SETTINGS.find((x) => x.key === FLAG_ALIASES[flag]);
    if (!s) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `unknown option ${JSON.stringify(arg)} (known: ${SETTINGS.map((x) => x.flag).join(', ')})`, { setting: arg });
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (s.kind === 'bool' && (argv[i + 1] === undefined || argv[i + 1].startsWith('--'))) value = 'true';
    else value = argv[++i];
    if (value === undefined) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${s.flag} needs a value`, { setting: s.flag });
    raw[s.key] = coerce(s, value, s.flag);
    origin.set(s.key, s.flag);
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (v !== undefined) {
      raw[k] = v;
      origin.set(k, k);
    }
  }
  if (!validate(raw)) {
    const e = validate.errors![0];
    const key = e.instancePath.split('/')[1] ?? (e.params as { additionalProperty?: string }).additionalProperty ?? '';
    const s = SETTINGS.find((x) => x.key === key);
    const name = origin.get(key) ?? (s ? `${s.flag} / ${s.env}` : key);
    const allowed = 'allowedValues' in e.params ? ` (allowed: ${(e.params.allowedValues as unknown[]).join(', ')})` : '';
    // A map's entry is named too: which model's mode is wrong.
    const entry = s?.kind === 'map' && e.instancePath.split('/').length > 2 ? ` ${e.instancePath.split('/').slice(2).join('/')}:` : '';
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${name}:${entry} ${e.message ?? 'is invalid'}${allowed}`, { setting: name });
  }
  const config = raw as unknown as ServerConfig;
  if (config.tolMin > config.tolMax) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${origin.get('tolMin') ?? '--tol-min'}: ${config.tolMin} exceeds tol max ${config.tolMax}`, { setting: 'tolMin' });
  }
  checkEdgeLimits(config, origin);
  if (config.modelControl !== 'none' && config.apiKeys.length === 0) {
    const n = origin.get('modelControl') ?? '--model-control';
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${n}: the repository API loads and unloads models, so it is behind authentication, always: set --api-keys (DEQ_API_KEYS) too`, { setting: n });
  }
  if (config.docs && !config.openapi) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${origin.get('docs') ?? '--docs'}: the interactive docs read /openapi.json; turn on --openapi or turn off --docs`, { setting: 'docs' });
  }
  return deepFreeze(config);
}

/** Limits that only make sense together (issue #22): each error names the setting to change. */
function checkEdgeLimits(c: ServerConfig, origin: Map<string, string>): void {
  const name = (key: keyof ServerConfig, fallback: string) => origin.get(key) ?? fallback;
  const largest = Math.max(c.bodyLimitBytes, c.imageLimitBytes);
  if (c.bodyBudgetBytes < largest) {
    const n = name('bodyBudgetBytes', '--body-budget');
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${n}: ${c.bodyBudgetBytes} is below the largest body one request may send (${largest}, --body-limit / --image-limit), so such a request could never be admitted`, { setting: n });
  }
  if (c.maxConnections > FD_LIMITS.maxConnections) {
    const n = name('maxConnections', '--max-connections');
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${n}: ${c.maxConnections} connections need more file descriptors than the open-file limit allows (ulimit -n ${FD_LIMITS.openFiles}: at most ${FD_LIMITS.maxConnections}, keeping ${FD_LIMITS.reserved} for the process and ${PROBE_HEADROOM} for health probes); raise ulimit -n or lower the setting`, { setting: n });
  }
  if (c.headersTimeoutMs > REQUEST_RECEIVE_MS || c.bodyTimeoutMs > REQUEST_RECEIVE_MS) {
    const n = c.headersTimeoutMs > REQUEST_RECEIVE_MS ? name('headersTimeoutMs', '--headers-timeout-ms') : name('bodyTimeoutMs', '--body-timeout-ms');
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${n}: must not exceed ${REQUEST_RECEIVE_MS} ms, the time a whole request gets to arrive`, { setting: n });
  }
}

/** Time a whole request (headers and body) gets to arrive; solves have their own deadline. */
export const REQUEST_RECEIVE_MS = 60_000;

interface FdLimits {
  /** The soft open-file limit, or null where it could not be read. */
  openFiles: number | null;
  /** Descriptors kept for the process itself: model files, worker threads, logs, ONNX Runtime. */
  reserved: number;
  /** The most --max-connections may be. */
  maxConnections: number;
  defaultMaxConnections: number;
}

/** The --max-connections bounds for an open-file limit (exported for tests). */
export function fdLimits(openFiles: number | null): FdLimits {
  if (openFiles === null) return { openFiles, reserved: 0, maxConnections: Number.MAX_SAFE_INTEGER, defaultMaxConnections: 1024 };
  const reserved = Math.max(64, Math.ceil(openFiles / 8));
  const maxConnections = Math.max(1, openFiles - reserved - PROBE_HEADROOM);
  return { openFiles, reserved, maxConnections, defaultMaxConnections: Math.min(DEFAULT_MAX_CONNECTIONS, maxConnections) };
}

/** The soft RLIMIT_NOFILE, as `ulimit -n` reports it: from /proc on Linux, else the shell. */
function readOpenFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) return m[1] === 'unlimited' ? null : Number(m[1]);
  } catch { /* not Linux */ }
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8', timeout: 2000 }).trim();
    return /^\d+$/.test(out) ? Number(out) : null;
  } catch {
    return null;
  }
}

/** The batching mode `model` runs in: its --model-batching entry, else --batching. */
export function batchingOf(c: Readonly<Pick<ServerConfig, 'batching' | 'modelBatching'>>, model: string): BatchingSetting {
  return Object.hasOwn(c.modelBatching, model) ? c.modelBatching[model] : c.batching;
}

/** The configuration as logged at start: API keys are counted, never shown. */
export function describeConfig(c: Readonly<ServerConfig>): Record<string, unknown> {
  return { ...c, apiKeys: `${c.apiKeys.length} key(s)`, cores: CORES };
}

function coerce(s: Setting, v: string, name: string): unknown {
  switch (s.kind) {
    case 'int':
    case 'number': {
      const n = v.trim() === '' ? NaN : Number(v);
      if (!Number.isFinite(n)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${name}: ${JSON.stringify(v)} is not a number`, { setting: name });
      return n;
    }
    case 'bool':
      if (/^(1|true|yes|on)$/i.test(v)) return true;
      if (/^(0|false|no|off)$/i.test(v)) return false;
      throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${name}: ${JSON.stringify(v)} is not a boolean (true/false)`, { setting: name });
    case 'list':
      return v.split(',').map((x) => x.trim()).filter((x) => x !== '');
    case 'map': {
      const out: Record<string, string> = {};
      for (const pair of v.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
        const eq = pair.indexOf('=');
        const key = pair.slice(0, eq).trim();
        if (eq === -1 || key === '') throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${name}: ${JSON.stringify(pair)} is not model=value`, { setting: name });
        if (Object.hasOwn(out, key)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting ${name}: ${key} is named twice`, { setting: name });
        out[key] = pair.slice(eq + 1).trim();
      }
      return out;
    }
    default:
      return v;
  }
}

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (typeof v === 'object' && v !== null) Object.freeze(v);
  return Object.freeze(o);
}
